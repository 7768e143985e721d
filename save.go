package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// SaveResult records result, which must marshal to JSON, as the outcome for
// key. The latest outcome of a key wins: this clears an earlier failure and
// replaces an earlier result. When it returns nil the record has been handed
// to the operating system in one write, so it survives the death of the
// process; with SyncAlways it is also on stable storage (see WithSync). On
// error nothing is recorded for key, except when the fsync of SyncAlways
// fails: the record was written, counts as saved and survives the death of
// the process, but may not survive a power cut.
func (r *Runner[K, T]) SaveResult(key K, result any) error {
	if r.backend != nil {
		return r.remoteSaveResult(key, result)
	}
	// The line is built in a pooled buffer, result encoded in place: with
	// json.Marshal every result was allocated and copied once more.
	lb := r.getLineBuilder()
	defer r.putLineBuilder(lb)
	b := &lb.buf
	b.WriteString(lineHead)
	kb, keyErr := r.keys.encode(b.AvailableBuffer(), key)
	b.Write(kb)
	b.WriteString(resultMid)
	if err := encodeResult(lb.enc, result); err != nil {
		return fmt.Errorf("checkpoint: result for key %v: %w", key, err)
	}
	if keyErr != nil {
		return fmt.Errorf("checkpoint: key %v: %w", key, keyErr)
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	// Build the whole line outside the lock; under it, only the timestamp
	// may need moving forward to keep the files in time order.
	now := time.Now().Truncate(time.Microsecond)
	b.Write(appendLineTail(b.AvailableBuffer(), now))
	if err := r.commitResult(key, b.Bytes(), now); err != nil {
		return err
	}
	if err := r.results.sync.saved(); err != nil {
		return err
	}
	r.maybeWriteMeta()
	return nil
}

// encodeResult encodes v, turning a panic in its MarshalJSON into an error:
// one bad result must not bring down a long job.
func encodeResult(enc *json.Encoder, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &json.MarshalerError{Type: reflect.TypeOf(v), Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	return enc.Encode(v)
}

// errorText is err.Error(), safe from an Error method that panics, such as
// one called on a typed nil pointer: fmt reports those instead of panicking.
func errorText(err error) string {
	return fmt.Sprint(err)
}

func (r *Runner[K, T]) commitResult(key K, line []byte, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.stampInOrder(line, now)
	off, err := r.results.append(line)
	if err != nil {
		return err
	}
	sp := r.index.upsert(key)
	if s := *sp; !s.done() {
		r.completed++
		if s != 0 {
			r.failed--
		}
	}
	*sp = sp.result(off)
	return nil
}

// SaveError records err as the outcome for key: the key counts as failed
// until a later SaveResult, and Iterate yields it again on the next run
// (subject to WithMaxAttempts). It returns nil once the record has been
// handed to the operating system; with SyncAlways, once it is on stable
// storage.
func (r *Runner[K, T]) SaveError(key K, err error) error {
	if err == nil {
		return errors.New("checkpoint: SaveError with a nil error")
	}
	if r.backend != nil {
		return r.remoteSaveError(key, err)
	}
	bp := r.getBuf()
	defer r.bufs.Put(bp)
	kb, kerr := r.keys.encode((*bp)[:0], key)
	if kerr != nil {
		return fmt.Errorf("checkpoint: key %v: %w", key, kerr)
	}
	if err := r.commitError(key, kb, errorText(err), bp); err != nil {
		return err
	}
	if err := r.errors.sync.saved(); err != nil {
		return err
	}
	r.maybeWriteMeta()
	return nil
}

// commitError builds the line under the lock, as it carries the attempt
// number; failures are rare enough for that not to matter.
func (r *Runner[K, T]) commitError(key K, kb []byte, msg string, bp *[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	s, seen := r.index.get(key)
	now := time.Now().Truncate(time.Microsecond)
	*bp = appendErrorLine(kb[len(kb):], kb, msg, s.attempts()+1, now)
	r.stampInOrder(*bp, now)
	off, err := r.errors.append(*bp)
	if err != nil {
		return err
	}
	if !seen || s.done() {
		r.failed++
		if s.done() {
			r.completed--
		}
	}
	*r.index.upsert(key) = s.failure(off)
	return nil
}

// stampInOrder makes the timestamp at the end of line, now, later than every
// earlier record's, rewriting it in place if the clock has not moved on (or
// went back). Order between the results and the errors file rests on it.
// r.mu must be held.
func (r *Runner[K, T]) stampInOrder(line []byte, now time.Time) {
	if now.After(r.lastTS) {
		r.lastTS = now
		return
	}
	r.lastTS = r.lastTS.Add(time.Microsecond)
	at := timestampAt(line)
	appendTimestamp(line[at:at], r.lastTS.In(time.Local))
}

func (r *Runner[K, T]) getLineBuilder() *lineBuilder {
	if lb, ok := r.lines.Get().(*lineBuilder); ok {
		lb.buf.Reset()
		return lb
	}
	lb := &lineBuilder{}
	lb.enc = json.NewEncoder(&lb.buf) // the same bytes as json.Marshal
	return lb
}

func (r *Runner[K, T]) putLineBuilder(lb *lineBuilder) {
	if lb.buf.Cap() <= maxPooledLine { // don't keep a huge result's buffer
		r.lines.Put(lb)
	}
}

func (r *Runner[K, T]) getBuf() *[]byte {
	if bp, ok := r.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 256)
	return &b
}
