package checkpoint

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// keyCodec turns keys into their JSON form and back. Keys of the basic kinds
// (strings, integers, floats, bools) take fast paths that neither allocate
// nor go through reflection, because Open decodes one key per line of a file
// that may hold tens of millions of lines. Every other key type goes through
// encoding/json.
//
// Decoding accepts a key written as a JSON string whatever the kind, because
// the Python library writes str(key) for every key.
type keyCodec[K comparable] struct {
	encode func(dst []byte, k K) ([]byte, error)
	decode func(raw []byte) (K, error)
	// decodeIn, if set, is decode for keys that are kept (Open's index):
	// string keys take their bytes from a, one allocation per many keys.
	// Use keep, which falls back to decode.
	decodeIn func(raw []byte, a *keyArena) (K, error)
	hash     func(k K) uint64 // seeded afresh for every codec, for the index
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

func newKeyCodec[K comparable]() (keyCodec[K], error) {
	t := reflect.TypeFor[K]()
	if err := checkKeyType(t); err != nil {
		return keyCodec[K]{}, fmt.Errorf("checkpoint: key type %v cannot be used: %w", t, err)
	}
	c, err := newKeyCodecOf[K](t)
	c.hash = newKeyHash[K](t)
	return c, err
}

// keep decodes a key that will be kept, carving string keys from a.
func (c *keyCodec[K]) keep(raw []byte, a *keyArena) (K, error) {
	if c.decodeIn != nil {
		return c.decodeIn(raw, a)
	}
	return c.decode(raw)
}

func newKeyCodecOf[K comparable](t reflect.Type) (keyCodec[K], error) {
	custom := t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)
	if custom {
		return genericCodec[K](), nil
	}
	switch t.Kind() {
	case reflect.String:
		return keyCodec[K]{encode: encodeString[K], decode: decodeString[K], decodeIn: decodeStringIn[K]}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := int(t.Size()) * 8
		return keyCodec[K]{encode: encodeInt[K](bits), decode: decodeInt[K](bits)}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := int(t.Size()) * 8
		return keyCodec[K]{encode: encodeUint[K](bits), decode: decodeUint[K](bits)}, nil
	case reflect.Float32, reflect.Float64:
		bits := int(t.Size()) * 8
		return keyCodec[K]{encode: encodeFloat[K](bits), decode: decodeFloat[K](bits)}, nil
	case reflect.Bool:
		return keyCodec[K]{encode: encodeBool[K], decode: decodeBool[K]}, nil
	}
	return genericCodec[K](), nil
}

// checkKeyType rejects key types whose values cannot come back from JSON
// equal to what was written: a key that does not round-trip would never be
// seen as completed, and its item would be redone on every run.
func checkKeyType(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Array:
		return checkKeyType(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				return fmt.Errorf("field %s is unexported and would not survive JSON", f.Name)
			}
			if f.Tag.Get("json") == "-" {
				return fmt.Errorf("field %s is excluded from JSON", f.Name)
			}
			if err := checkKeyType(f.Type); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		return nil
	}
	return fmt.Errorf("a %s cannot round-trip through JSON", t.Kind())
}

var errKeyUTF8 = errors.New("key is not valid UTF-8, so it would not round-trip through JSON")

func encodeString[K comparable](dst []byte, k K) ([]byte, error) {
	s := *(*string)(unsafe.Pointer(&k))
	if !utf8.ValidString(s) {
		return dst, errKeyUTF8
	}
	return appendJSONString(dst, s), nil
}

func decodeString[K comparable](raw []byte) (K, error) {
	s, err := decodeStringValue(raw)
	if err != nil {
		var k K
		return k, err
	}
	// Converting through the string itself, rather than writing into a K
	// through a pointer, keeps the key off the heap: one allocation per key
	// (its bytes), not two. Open makes one per line.
	return *(*K)(unsafe.Pointer(&s)), nil
}

// decodeStringIn is decodeString for keys the index keeps: the common
// case, a key without escapes, is copied into the arena.
func decodeStringIn[K comparable](raw []byte, a *keyArena) (K, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 {
		s := a.string(raw[1 : len(raw)-1])
		return *(*K)(unsafe.Pointer(&s)), nil
	}
	return decodeString[K](raw)
}

// keyArena hands out strings carved from large blocks. Open decodes millions
// of keys that live as long as the runner; allocating each on its own cost
// more than parsing its line (malloc, and work for the garbage collector).
// A block is freed once no key in it is referenced. The zero value is
// ready; it is not safe for concurrent use.
type keyArena struct {
	block []byte
}

const (
	arenaBlock  = 64 << 10
	arenaMaxKey = 256 // longer keys get their own allocation
)

func (a *keyArena) string(b []byte) string {
	if len(b) == 0 || len(b) > arenaMaxKey {
		return string(b)
	}
	if len(a.block)+len(b) > cap(a.block) {
		a.block = make([]byte, 0, arenaBlock)
	}
	start := len(a.block)
	a.block = append(a.block, b...)
	// The bytes are never written again: the next key goes after them.
	return unsafe.String(&a.block[start], len(b))
}

func decodeStringValue(raw []byte) (string, error) {
	switch {
	case len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0:
		return string(raw[1 : len(raw)-1]), nil
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case isJSONNumber(raw):
		// A file written with numeric keys, read with string keys.
		return string(raw), nil
	}
	return "", fmt.Errorf("key %.40q is not a string", raw)
}

// unquoteScalar strips the quotes from a key the Python library wrote as
// str(key); such keys never hold escapes.
func unquoteScalar(raw []byte) []byte {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		return raw[1 : len(raw)-1]
	}
	return raw
}

func encodeInt[K comparable](bits int) func([]byte, K) ([]byte, error) {
	return func(dst []byte, k K) ([]byte, error) {
		p := unsafe.Pointer(&k)
		var v int64
		switch bits {
		case 8:
			v = int64(*(*int8)(p))
		case 16:
			v = int64(*(*int16)(p))
		case 32:
			v = int64(*(*int32)(p))
		default:
			v = *(*int64)(p)
		}
		return strconv.AppendInt(dst, v, 10), nil
	}
}

func decodeInt[K comparable](bits int) func([]byte) (K, error) {
	lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	return func(raw []byte) (K, error) {
		var k K
		digits := unquoteScalar(raw)
		v, ok := parseSmallInt(digits)
		if !ok || v < lo || v > hi {
			var err error
			// strconv for what the fast path leaves: signs, long or out of
			// range numbers, and errors.
			if v, err = strconv.ParseInt(string(digits), 10, bits); err != nil {
				return k, fmt.Errorf("key %.40q is not an integer", raw)
			}
		}
		p := unsafe.Pointer(&k)
		switch bits {
		case 8:
			*(*int8)(p) = int8(v)
		case 16:
			*(*int16)(p) = int16(v)
		case 32:
			*(*int32)(p) = int32(v)
		default:
			*(*int64)(p) = v
		}
		return k, nil
	}
}

func encodeUint[K comparable](bits int) func([]byte, K) ([]byte, error) {
	return func(dst []byte, k K) ([]byte, error) {
		p := unsafe.Pointer(&k)
		var v uint64
		switch bits {
		case 8:
			v = uint64(*(*uint8)(p))
		case 16:
			v = uint64(*(*uint16)(p))
		case 32:
			v = uint64(*(*uint32)(p))
		default:
			v = *(*uint64)(p)
		}
		return strconv.AppendUint(dst, v, 10), nil
	}
}

func decodeUint[K comparable](bits int) func([]byte) (K, error) {
	hi := uint64(1)<<(bits-1)<<1 - 1
	return func(raw []byte) (K, error) {
		var k K
		digits := unquoteScalar(raw)
		v, ok := parseSmallUint(digits)
		if !ok || v > hi {
			var err error
			if v, err = strconv.ParseUint(string(digits), 10, bits); err != nil {
				return k, fmt.Errorf("key %.40q is not an unsigned integer", raw)
			}
		}
		p := unsafe.Pointer(&k)
		switch bits {
		case 8:
			*(*uint8)(p) = uint8(v)
		case 16:
			*(*uint16)(p) = uint16(v)
		case 32:
			*(*uint32)(p) = uint32(v)
		default:
			*(*uint64)(p) = v
		}
		return k, nil
	}
}

// parseSmallUint reads up to 18 decimal digits, which cannot overflow, and
// nothing else. ok is false for anything else: strconv then decides.
func parseSmallUint(b []byte) (v uint64, ok bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		v = v*10 + uint64(d)
	}
	return v, true
}

// parseSmallInt is parseSmallUint with an optional minus sign.
func parseSmallInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, ok := parseSmallUint(b)
	if neg {
		return -int64(u), ok
	}
	return int64(u), ok
}

var errKeyNaN = errors.New("key is NaN or infinite, which JSON cannot hold")

func encodeFloat[K comparable](bits int) func([]byte, K) ([]byte, error) {
	return func(dst []byte, k K) ([]byte, error) {
		p := unsafe.Pointer(&k)
		var v float64
		if bits == 32 {
			v = float64(*(*float32)(p))
		} else {
			v = *(*float64)(p)
		}
		if v != v || v > maxFloat(bits) || v < -maxFloat(bits) {
			return dst, errKeyNaN
		}
		return strconv.AppendFloat(dst, v, 'g', -1, bits), nil
	}
}

func maxFloat(bits int) float64 {
	if bits == 32 {
		return 3.40282346638528859811704183484516925440e+38
	}
	return 1.79769313486231570814527423731704356798070e+308
}

func decodeFloat[K comparable](bits int) func([]byte) (K, error) {
	return func(raw []byte) (K, error) {
		var k K
		v, err := strconv.ParseFloat(string(unquoteScalar(raw)), bits)
		if err != nil {
			return k, fmt.Errorf("key %.40q is not a number", raw)
		}
		p := unsafe.Pointer(&k)
		if bits == 32 {
			*(*float32)(p) = float32(v)
		} else {
			*(*float64)(p) = v
		}
		return k, nil
	}
}

func encodeBool[K comparable](dst []byte, k K) ([]byte, error) {
	return strconv.AppendBool(dst, *(*bool)(unsafe.Pointer(&k))), nil
}

func decodeBool[K comparable](raw []byte) (K, error) {
	var k K
	var v bool
	// Python writes str(True) as "True".
	switch string(unquoteScalar(raw)) {
	case "true", "True":
		v = true
	case "false", "False":
	default:
		return k, fmt.Errorf("key %.40q is not a bool", raw)
	}
	*(*bool)(unsafe.Pointer(&k)) = v
	return k, nil
}

// genericCodec serves composite keys and keys with their own JSON methods.
// Saving checks that the key comes back equal, so a key that would not be
// recognised on resume is refused up front rather than redone forever.
func genericCodec[K comparable]() keyCodec[K] {
	decode := func(raw []byte) (K, error) {
		var k K
		err := json.Unmarshal(raw, &k)
		if err != nil && len(raw) > 0 && raw[0] == '"' {
			// The Python library wrote str(key); try what the string holds.
			var s string
			if json.Unmarshal(raw, &s) == nil && json.Unmarshal([]byte(s), &k) == nil {
				return k, nil
			}
		}
		return k, err
	}
	encode := func(dst []byte, k K) ([]byte, error) {
		b, err := json.Marshal(k)
		if err != nil {
			return dst, err
		}
		back, err := decode(b)
		if err != nil || back != k {
			return dst, fmt.Errorf("key %s does not round-trip through JSON", b)
		}
		return append(dst, b...), nil
	}
	return keyCodec[K]{encode: encode, decode: decode}
}

func isJSONNumber(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			return false
		}
	}
	return true
}

// newKeyHash returns a hash function for keys of type t with a fresh random
// seed, so that no set of keys collides on every run. Integers and strings,
// the common keys, get hashes that cost a few nanoseconds; every other type
// goes through maphash.Comparable, which agrees with == (for example for
// +0.0 and -0.0).
func newKeyHash[K comparable](t reflect.Type) func(K) uint64 {
	seed := maphash.MakeSeed()
	var h maphash.Hash
	h.SetSeed(seed)
	s := h.Sum64() | 1 // seed-dependent bits for the integer mix
	switch t.Kind() {
	case reflect.String:
		return func(k K) uint64 { return maphash.String(seed, *(*string)(unsafe.Pointer(&k))) }
	case reflect.Int8, reflect.Uint8, reflect.Bool:
		return func(k K) uint64 { return mix64(uint64(*(*uint8)(unsafe.Pointer(&k))) ^ s) }
	case reflect.Int16, reflect.Uint16:
		return func(k K) uint64 { return mix64(uint64(*(*uint16)(unsafe.Pointer(&k))) ^ s) }
	case reflect.Int32, reflect.Uint32:
		return func(k K) uint64 { return mix64(uint64(*(*uint32)(unsafe.Pointer(&k))) ^ s) }
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr:
		if t.Size() == 8 {
			return func(k K) uint64 { return mix64(*(*uint64)(unsafe.Pointer(&k)) ^ s) }
		}
	}
	return func(k K) uint64 { return maphash.Comparable(seed, k) }
}

// mix64 is the finaliser of MurmurHash3: every input bit affects every
// output bit, and it is a bijection, so distinct integers never collide
// before the table's mask.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
