package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strconv"
	"time"
	"unsafe"
)

// A keyIndex is the index of a checkpoint read by code that does not know
// the key type it was written with: Inspect, Watch and the commands that
// change files. Keys are matched by their KeyText, so 42 and "42" are one
// key, as they are to a Runner.
//
// Most checkpoints have integer keys (a Go runner's int keys, or the
// Python library's str(i)). Indexing their text costs what string keys
// cost, about twice what integers cost in Open at ten million keys, so
// loadKeyIndex tries integers first: when every key's text is a canonical
// integer (no sign but a minus, no leading zero, no "-0", within int64),
// text and integer are one-to-one and an index of int64 matches exactly as
// the text index would. At the first other key it starts over with text.
//
// A keyIndex is not safe for concurrent use.
type keyIndex interface {
	journals() (results, errors *journal)
	counts() (completed, failed int)
	lastTime() time.Time
	// near returns the slot of the key whose JSON is raw, for a caller
	// walking keys in about the order they were first saved (see findNear).
	near(raw []byte, c *cursor) (slot, bool)
	// get returns the slot of the key whose KeyText is text.
	get(text string) (slot, bool)
	// slots yields every key's slot, in order of first appearance.
	slots(yield func(slot) bool)
	// texts yields the KeyText of every key, in order of first appearance.
	texts(yield func(string) bool)
	// release gives the index's memory back (its tables may be mapped
	// apart from the Go heap, see tableMem) and leaves it empty: nothing
	// may be reading it.
	release()
}

// typedIndex is a keyIndex over keys of type K: string (the KeyText) or
// int64 (the numeric fast path).
type typedIndex[K comparable] struct {
	r        *Runner[K, json.RawMessage]
	fromRaw  func(raw []byte) (K, bool) // for a lookup: need not copy
	fromText func(text string) (K, bool)
	text     func(K) string
}

func (x *typedIndex[K]) journals() (*journal, *journal) { return x.r.results, x.r.errors }
func (x *typedIndex[K]) counts() (int, int)             { return x.r.completed, x.r.failed }
func (x *typedIndex[K]) lastTime() time.Time            { return x.r.lastTS }

func (x *typedIndex[K]) near(raw []byte, c *cursor) (slot, bool) {
	k, ok := x.fromRaw(raw)
	if !ok {
		return 0, false
	}
	return x.r.index.getNear(k, c)
}

func (x *typedIndex[K]) get(text string) (slot, bool) {
	k, ok := x.fromText(text)
	if !ok {
		return 0, false
	}
	return x.r.index.get(k)
}

func (x *typedIndex[K]) slots(yield func(slot) bool) {
	for _, s := range x.r.index.all {
		if !yield(s) {
			return
		}
	}
}

func (x *typedIndex[K]) release() { x.r.index.reset(0) }

func (x *typedIndex[K]) texts(yield func(string) bool) {
	for k := range x.r.index.all {
		if !yield(x.text(k)) {
			return
		}
	}
}

// textRunner returns the Runner of a text index, which Watch extends as a
// job appends; nil for a numeric one.
func textRunner(ix keyIndex) *Runner[string, json.RawMessage] {
	if t, ok := ix.(*typedIndex[string]); ok {
		return t.r
	}
	return nil
}

// errNotNumeric stops a numeric load at a key that is not a canonical
// integer: loadKeyIndex then loads the journals as text.
var errNotNumeric = errors.New("key is not a canonical integer")

// loadKeyIndex indexes the journals results and errors (either may have no
// file), numerically if every key allows it (see keyIndex) unless text is
// set. It returns the number of records in each journal.
func loadKeyIndex(dir, name string, results, errs *journal, text bool) (ix keyIndex, resRecords, errRecords int, err error) {
	if !text && numericEnds(results) && numericEnds(errs) {
		ix, resRecords, errRecords, err = loadTyped(dir, name, results, errs, numericKeyCodec(),
			numericKey, func(s string) (int64, bool) { return canonicalInt([]byte(s)) },
			func(k int64) string { return strconv.FormatInt(k, 10) })
		if !errors.Is(err, errNotNumeric) {
			return ix, resRecords, errRecords, err
		}
	}
	return loadTyped(dir, name, results, errs, keyTextCodec(),
		func(raw []byte) (string, bool) {
			k, err := lookupText(raw)
			return k, err == nil
		},
		func(s string) (string, bool) { return s, true },
		func(k string) string { return k })
}

func loadTyped[K comparable](dir, name string, results, errs *journal, codec keyCodec[K],
	fromRaw func([]byte) (K, bool), fromText func(string) (K, bool), text func(K) string,
) (keyIndex, int, int, error) {
	r := &Runner[K, json.RawMessage]{name: name, dir: dir, log: slog.New(slog.DiscardHandler),
		keys: codec, results: results, errors: errs}
	resRecords, errRecords, err := r.loadIndex()
	if err != nil {
		if r.index != nil {
			r.index.reset(0) // a numeric load given up for text: its memory now
		}
		return nil, 0, 0, err
	}
	return &typedIndex[K]{r: r, fromRaw: fromRaw, fromText: fromText, text: text}, resRecords, errRecords, nil
}

// numericEnds reports whether the first and the last line of j have
// integer keys (or j has no lines): a cheap guess, before a numeric load,
// that saves it from finding a string key only at the end of a long file.
func numericEnds(j *journal) bool {
	if j.f == nil {
		return true
	}
	size, err := fileSize(j.f)
	if err != nil || size == 0 {
		return true
	}
	tail := make([]byte, min(size, 4096))
	if _, err := j.f.ReadAt(tail, size-int64(len(tail))); err != nil {
		return true // the load reports it
	}
	tail = bytes.TrimRight(tail, "\r\n")
	if i := bytes.LastIndexByte(tail, '\n'); i >= 0 {
		tail = tail[i+1:]
	} else if int64(len(tail)) < size {
		tail = nil // a last line longer than the block: do not guess
	}
	head, err := j.readLine(0)
	if err != nil {
		return true
	}
	for _, line := range [][]byte{head, tail} {
		if len(line) == 0 {
			continue
		}
		if rec, ok := parseRecord(bytes.TrimSuffix(line, []byte{'\r'})); ok {
			if _, ok := numericKey(rec.key); !ok {
				return false
			}
		}
	}
	return true
}

// numericKeyCodec decodes keys whose KeyText is a canonical integer, 42 or
// "42", and fails with errNotNumeric on any other.
func numericKeyCodec() keyCodec[int64] {
	decode := func(raw []byte) (int64, error) {
		if k, ok := numericKey(raw); ok {
			return k, nil
		}
		return 0, errNotNumeric
	}
	return keyCodec[int64]{
		decode: decode,
		encode: func(dst []byte, k int64) ([]byte, error) { return strconv.AppendInt(dst, k, 10), nil },
		hash:   newKeyHash[int64](reflect.TypeFor[int64]()),
	}
}

// numericKey returns the integer whose canonical text is raw's KeyText.
func numericKey(raw []byte) (int64, bool) {
	if len(raw) >= 2 && raw[0] == '"' {
		if raw[len(raw)-1] != '"' || bytes.IndexByte(raw, '\\') >= 0 {
			// An escaped key is rare: its text, the slow way.
			t, err := keyText(raw)
			if err != nil {
				return 0, false
			}
			return canonicalInt(unsafe.Slice(unsafe.StringData(t), len(t)))
		}
		raw = raw[1 : len(raw)-1]
	}
	return canonicalInt(raw)
}

// canonicalInt parses b if it is an integer as strconv.FormatInt writes
// it; ok is false for any other text ("+1", "01", "-0", "1e3", overflow).
func canonicalInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && (len(b) > 1 || neg)) {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	switch {
	case !neg && u <= 1<<63-1:
		return int64(u), true
	case neg && u <= 1<<63:
		return -int64(u), true // -1<<63 wraps to itself
	}
	return 0, false
}
