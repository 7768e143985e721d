package checkpoint

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"
)

// Result decodes key's latest result into v, as json.Unmarshal would. It
// reads from disk. found is false, with a nil error, if key is not completed.
func (r *Runner[K, T]) Result(key K, v any) (found bool, err error) {
	if r.backend != nil {
		return r.remoteResult(key, v)
	}
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return false, ErrClosed
	}
	s, _ := r.index.get(key)
	if !s.done() {
		r.mu.RUnlock()
		return false, nil
	}
	line, err := r.results.readLine(s.offset())
	r.mu.RUnlock()
	if err != nil {
		return false, err
	}
	rec, ok := parseRecord(line)
	if !ok {
		return false, fmt.Errorf("%w: %s at byte %d is not a record", ErrCorrupt, r.results.path, s.offset())
	}
	if err := json.Unmarshal(rec.body, v); err != nil {
		return true, fmt.Errorf("checkpoint: result for key %v: %w", key, err)
	}
	return true, nil
}

// AllResults returns an iterator over the latest result of every completed
// key, in the order they were saved. It streams them from disk: memory does
// not grow with the number of results. Each value is the result's JSON, a
// fresh copy the caller may keep. An I/O error stops the iterator and is
// reported by Err.
//
// The loop reads the results file as it was when the loop started, so it is
// safe to save inside it: a key saved for the first time during the loop is
// not yielded, and a key saved again is yielded once, with its latest result.
func (r *Runner[K, T]) AllResults() iter.Seq2[K, json.RawMessage] {
	if r.backend != nil {
		return r.remoteResults()
	}
	return func(yield func(K, json.RawMessage) bool) {
		r.mu.RLock()
		closed, gen, end := r.closed, r.gen, r.results.size
		r.mu.RUnlock()
		if closed {
			r.setErr(ErrClosed)
			return
		}
		var moved map[K]struct{} // keys re-saved past end during the loop, once yielded
		var sc lineScanner
		stop := errors.New("stop")
		var c cursor
		_, err := sc.scan(r.results.f, 0, end, func(off int64, _ int, line []byte) error {
			rec, ok := parseRecord(line)
			if !ok {
				return nil
			}
			k, err := r.keys.decode(rec.key)
			if err != nil {
				return nil
			}
			r.mu.RLock()
			s, _ := r.index.getNear(k, &c)
			closed = r.closed
			live := r.gen == gen && !closed
			var latest []byte
			var rerr error
			if live && s.done() && s.offset() >= end {
				if _, done := moved[k]; !done {
					latest, rerr = r.results.readLine(s.offset())
				}
			}
			r.mu.RUnlock()
			switch {
			case !live:
				return stop
			case rerr != nil:
				return rerr
			case !s.done():
				return nil
			case s.offset() == off:
			case latest != nil:
				if rec, ok = parseRecord(latest); !ok {
					return nil
				}
				if moved == nil {
					moved = make(map[K]struct{})
				}
				moved[k] = struct{}{}
			default:
				return nil // an older result of this key
			}
			if !yield(k, slices.Clone(json.RawMessage(rec.body))) {
				return stop
			}
			return nil
		})
		switch {
		case closed || (err != nil && err != stop && r.runnerClosed()):
			r.setErr(ErrClosed) // a partial read must not pass for a whole one
		case err != nil && err != stop:
			r.setErr(fmt.Errorf("checkpoint: read %s: %w", r.results.path, err))
		}
	}
}

// A Failure is a key whose latest outcome is an error.
type Failure[K comparable] struct {
	Key      K
	Error    string
	Attempts int       // failed attempts recorded for this key, over all runs
	Time     time.Time // of the latest failure
}

// AllErrors returns the keys whose latest outcome is an error, oldest failure
// first, with their latest error. A key that failed and later succeeded is not
// among them. It reads the messages from disk; an I/O error is reported by Err.
func (r *Runner[K, T]) AllErrors() []Failure[K] {
	if r.backend != nil {
		return r.remoteErrors()
	}
	type entry struct {
		key K
		s   slot
	}
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		r.setErr(ErrClosed)
		return nil
	}
	gen := r.gen
	entries := make([]entry, 0, r.failed)
	for k, s := range r.index.all {
		if !s.done() {
			entries = append(entries, entry{k, s})
		}
	}
	r.mu.RUnlock()

	// The messages are read without the lock, so that saves go on meanwhile:
	// the lines are append-only, and only Clear (a new generation) or Close
	// can take them away.
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.s.offset(), b.s.offset()) })
	out := make([]Failure[K], 0, len(entries))
	for _, e := range entries {
		line, err := r.errors.readLine(e.s.offset())
		if err != nil {
			r.mu.RLock()
			closed, cleared := r.closed, r.gen != gen
			r.mu.RUnlock()
			switch {
			case cleared:
				return nil
			case closed:
				err = ErrClosed
			}
			r.setErr(err)
			return out
		}
		msg, ts := errorFields(line)
		out = append(out, Failure[K]{Key: e.key, Error: msg, Attempts: e.s.attempts(), Time: ts})
	}
	r.mu.RLock()
	cleared := r.gen != gen
	r.mu.RUnlock()
	if cleared {
		return nil // the checkpoint was cleared while we read
	}
	return out
}
