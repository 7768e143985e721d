package checkpoint

import (
	"encoding/binary"
	"reflect"
	"unsafe"
)

// Marking items in flight: the hooks Process, Iterate, IterateSeq and
// IterateWithProgress call around each item. The work per item is a few
// stores into the worker's slot (see inflight_file.go): the key's bits
// (basic kinds) or JSON (other keys), the key's index slot as the loop
// found it, then the state word; and one store to clear it. No lock, no
// system call, no allocation.

// keyForm is how keys of a type are copied into a slot.
type keyForm uint8

const (
	kfJSON keyForm = iota // encoded by the codec
	kfInt8
	kfInt16
	kfInt32
	kfInt64
	kfUint8
	kfUint16
	kfUint32
	kfUint64
	kfFloat32
	kfFloat64
	kfBool
	kfString
)

// keyFormOf picks the form for K: its bits for the basic kinds, unless the
// type marshals itself (then JSON, as the codec does).
func keyFormOf[K comparable]() keyForm {
	t := reflect.TypeFor[K]()
	if t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType) {
		return kfJSON
	}
	size := t.Size()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[uintptr]keyForm{1: kfInt8, 2: kfInt16, 4: kfInt32, 8: kfInt64}[size]
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[uintptr]keyForm{1: kfUint8, 2: kfUint16, 4: kfUint32, 8: kfUint64}[size]
	case reflect.Float32:
		return kfFloat32
	case reflect.Float64:
		return kfFloat64
	case reflect.Bool:
		return kfBool
	case reflect.String:
		return kfString
	}
	return kfJSON
}

// iterateSlot is the slot of an Iterate loop: nil unless WithInFlightIterate.
func (r *Runner[K, T]) iterateSlot() *flightSlot {
	if !r.ext.trackIterate {
		return nil
	}
	return r.ext.flight.acquire()
}

// processSlot is the slot of a Process worker: nil when tracking is off.
func (r *Runner[K, T]) processSlot() *flightSlot { return r.ext.flight.acquire() }

// yieldTracked yields item with k marked in flight in fl (if fl is not
// nil); then is k's index slot as the loop found it.
func (r *Runner[K, T]) yieldTracked(fl *flightSlot, k K, then slot, item T, yield func(T) bool) bool {
	if fl == nil {
		return yield(item)
	}
	r.beginAt(fl, k, then)
	ok := yield(item)
	fl.end()
	return ok
}

// begin marks k in flight in fl (Process: it looks k up first).
func (r *Runner[K, T]) begin(fl *flightSlot, k K) {
	if fl == nil {
		return
	}
	r.mu.RLock()
	then, _ := r.index.get(k)
	r.mu.RUnlock()
	r.beginAt(fl, k, then)
}

// beginAt marks k in flight in fl. then is k's index slot, read before the
// item started: at Open, a key whose slot differs has been saved since, so
// it finished. A suspect waits until it can run alone; while there are
// suspects, other keys wait while one runs. A key that cannot be encoded
// (it could not be saved either) is not marked.
func (r *Runner[K, T]) beginAt(fl *flightSlot, k K, then slot) {
	if r.ext.hasSuspects.Load() {
		r.isolateFor(fl, k)
	}
	kp := unsafe.Pointer(&k)
	form, n := uint64(formInt), 8
	var v uint64
	switch r.ext.form {
	case kfInt8:
		v = uint64(*(*int8)(kp))
	case kfInt16:
		v = uint64(*(*int16)(kp))
	case kfInt32:
		v = uint64(*(*int32)(kp))
	case kfInt64:
		v = uint64(*(*int64)(kp))
	case kfUint8:
		v, form = uint64(*(*uint8)(kp)), formUint
	case kfUint16:
		v, form = uint64(*(*uint16)(kp)), formUint
	case kfUint32:
		v, form = uint64(*(*uint32)(kp)), formUint
	case kfUint64:
		v, form = *(*uint64)(kp), formUint
	case kfFloat64:
		v, form = *(*uint64)(kp), formFloat64
	case kfFloat32:
		v, form, n = uint64(*(*uint32)(kp)), formFloat32, 4
	case kfBool:
		v, form, n = uint64(*(*uint8)(kp)), formBool, 1
	case kfString:
		s := *(*string)(kp)
		if len(s) > flightPageRoom {
			fl.commitLong(formString, unsafe.Slice(unsafe.StringData(s), len(s)), then)
			return
		}
		copy(fl.mem[flightHeader:], s)
		fl.commit(flightHead(formString, len(s)), then)
		return
	default:
		kb, err := r.keys.encode(fl.keyRoom()[:0], k)
		switch {
		case err != nil || len(kb) == 0:
		case len(kb) <= flightPageRoom && &kb[0] == &fl.mem[flightHeader]:
			fl.commit(flightHead(formJSON, len(kb)), then)
		default: // too long for the first page: encoded elsewhere
			fl.commitLong(formJSON, kb, then)
		}
		return
	}
	binary.LittleEndian.PutUint64((*[8]byte)(unsafe.Add(fl.base, flightHeader))[:], v)
	fl.commit(flightHead(form, n), then)
}

// isolateFor makes a suspect key run alone, and other keys wait while one
// runs.
func (r *Runner[K, T]) isolateFor(fl *flightSlot, k K) {
	fl.iso = &r.ext.isolate
	if r.isSuspect(k) {
		fl.iso.Lock()
		fl.mode = 2
	} else {
		fl.iso.RLock()
		fl.mode = 1
	}
}

// end clears the slot: the item ended.
func (s *flightSlot) end() {
	if s == nil {
		return
	}
	if s.writeAt || s.mode != 0 {
		s.endSlow()
		return
	}
	binary.LittleEndian.PutUint64((*[8]byte)(s.base)[:], 0)
}

func (s *flightSlot) endSlow() {
	s.clear()
	switch s.mode {
	case 0:
		return
	case 2:
		s.iso.Unlock()
	default:
		s.iso.RUnlock()
	}
	s.mode = 0
}

func (r *Runner[K, T]) isSuspect(k K) bool {
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	_, ok := r.ext.suspects[k]
	return ok
}
