package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"unsafe"
)

// A Ref names a checkpoint on disk: the folder that holds its files and its
// name, as given to WithDir and Open.
type Ref struct {
	Dir  string `json:"dir"`
	Name string `json:"name"`
}

func (r Ref) String() string { return filepath.Join(r.Dir, r.Name) }

// A view is a checkpoint read without its lock, for Compare and Summarize:
// its journals up to their last complete line when the view was opened (a
// running job may append more; those lines are not seen), and an index of
// each key's latest outcome. The index holds no keys, only a 64-bit hash of
// each and the offset of its latest line: 16 bytes per key, about half of
// what a Runner's index takes. Keys of any type are compared in a canonical
// form (see canonicalKey), so a checkpoint written by Go with integer keys
// and one written by Python (str(key)) match.
//
// A view is not safe for concurrent use.
type lightView struct {
	ref             Ref
	results, errors *journal // read-only; size is where the view ends
	table           keyTable
	kinds           keyKinds
	completed       int // keys whose latest outcome is a result
	failed          int // keys whose latest outcome is an error
	// Lines of each journal that are not their key's latest outcome. When
	// there are none, every line is, and Compare need not look it up.
	supersededResults, supersededErrors int
}

// openLightView opens ref read-only and indexes it. seed hashes the keys: views
// that will be looked up in each other share it.
func openLightView(ctx context.Context, ref Ref, seed maphash.Seed) (_ *lightView, err error) {
	if err := checkName(ref.Name); err != nil {
		return nil, err
	}
	v := &lightView{ref: ref}
	defer func() {
		if err != nil {
			v.close()
		}
	}()
	// openReadOnly (inspect.go) follows a rename batch under way, as a
	// compaction makes; a missing journal has no file.
	if v.errors, err = openReadOnly(ref.Dir, ref.Name, "_errors.jsonl"); err != nil {
		return nil, err
	}
	if v.results, err = openReadOnly(ref.Dir, ref.Name, "_results.jsonl"); err != nil {
		return nil, err
	}
	if v.errors.f == nil && v.results.f == nil {
		if _, err := os.Stat(filepath.Join(ref.Dir, ref.Name+"_meta.json")); err != nil {
			return nil, fmt.Errorf("checkpoint: %q in %s: %w", ref.Name, ref.Dir, ErrNoCheckpoint)
		}
	}
	for _, j := range []*journal{v.errors, v.results} {
		if j.f != nil {
			if j.size, err = fileSize(j.f); err != nil {
				return nil, fmt.Errorf("checkpoint: %s: %w", j.path, err)
			}
		}
	}
	hint := 0
	for _, j := range []*journal{v.errors, v.results} {
		lines, _ := j.sizeHintsOrZero()
		hint += lines
	}
	v.table.init(seed, hint)
	// Errors first, so that a result can be weighed against the key's
	// latest error, as Open does.
	if err := v.indexJournal(ctx, v.errors, false); err != nil {
		return nil, err
	}
	if err := v.indexJournal(ctx, v.results, true); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *lightView) close() {
	for _, j := range []*journal{v.results, v.errors} {
		if j != nil && j.f != nil {
			j.f.Close()
		}
	}
}

// ctxEvery is how many lines go between two checks of the context.
const ctxEvery = 1 << 16

// scanRecords calls fn for every record of j in file order, with its offset
// and line number. A line that is not a record fails with an error wrapping
// ErrCorrupt unless nothing but such lines follow it: that is a torn end (a
// job may be writing it now), which is not read. It sets j.size to the end
// of the last record read.
func scanRecords(ctx context.Context, j *journal, fn func(off int64, lineNo int, line []byte, rec record) error) error {
	if j == nil || j.f == nil {
		return nil
	}
	var sc lineScanner
	badLine, end := 0, int64(0)
	var badText []byte
	_, err := sc.scan(j.f, 0, j.size, func(off int64, lineNo int, line []byte) error {
		if lineNo%ctxEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		rec, ok := parseRecord(line)
		if !ok {
			if badLine == 0 {
				badLine, badText = lineNo, bytes.Clone(line[:min(len(line), 60)])
			}
			return nil
		}
		if badLine != 0 {
			return fmt.Errorf("%w: %s line %d is not a record: %q", ErrCorrupt, j.path, badLine, badText)
		}
		end = off + int64(len(line)) + 1
		return fn(off, lineNo, line, rec)
	})
	if err != nil {
		return err
	}
	j.size = end
	return nil
}

// indexJournal adds every record of j to the index: the latest line of a
// key wins, and a result wins over an error only if it is not older.
func (v *lightView) indexJournal(ctx context.Context, j *journal, isResult bool) error {
	t := &v.table
	return scanAhead(ctx, j, t.hash, t.touch, func(p *pendingLine) error {
		rec := p.rec
		v.kinds.add(p.kind, rec.key)
		s := newViewSlot(p.off, isResult)
		sp, isNew, err := v.upsert(p.canon, p.h)
		if err != nil {
			return err
		}
		switch {
		case isNew:
			if isResult {
				v.completed++
			} else {
				v.failed++
			}
		case !isResult:
			v.supersededErrors++
		case sp.done():
			v.supersededResults++
		default:
			// The key failed before: the result wins unless the error is
			// newer (the two files are ordered only by their timestamps).
			errTS, ok1 := v.errors.timeAt(sp.offset())
			resTS, ok2 := parseTimestamp(rec.ts)
			if ok1 && ok2 && resTS.Before(errTS) {
				v.supersededResults++
				return nil
			}
			v.supersededErrors++
			v.failed--
			v.completed++
		}
		*sp = s
		return nil
	})
}

// A pendingLine is a record that scanAhead holds back: a copy of its line,
// the record parsed from it, and its key in canonical form with the key's
// hash.
type pendingLine struct {
	off    int64
	lineNo int
	h      uint64
	kind   keyKind
	canon  []byte
	line   []byte
	rec    record // slices of line
}

// aheadLines is how many records scanAhead holds back: enough cache misses
// in flight to cover memory latency, few enough lines to stay in cache.
const aheadLines = 32

// scanAhead is scanRecords for work on hash tables far larger than the CPU
// caches, where each record costs a cache miss or two. It reads records in
// batches of aheadLines: each record's key is put in canonical form and
// hashed, then touch is called for the whole batch in a tight loop, so that
// the table words the batch will need load all at once (their misses
// overlap, as in Open: see index.upsertBatch), and then fn is called for
// each record of the batch, in file order.
func scanAhead(ctx context.Context, j *journal, hash func([]byte) uint64, touch func(hs []uint64), fn func(p *pendingLine) error) error {
	var ring [aheadLines]pendingLine
	var hs [aheadLines]uint64
	n := 0
	flush := func() error {
		touch(hs[:n])
		for i := range n {
			if err := fn(&ring[i]); err != nil {
				return err
			}
		}
		n = 0
		return nil
	}
	err := scanRecords(ctx, j, func(off int64, lineNo int, line []byte, rec record) error {
		p := &ring[n]
		var err error
		if p.canon, p.kind, err = canonicalKey(p.canon[:0], rec.key); err != nil {
			return fmt.Errorf("checkpoint: %s line %d: %w", j.path, lineNo, err)
		}
		p.h = hash(p.canon)
		hs[n] = p.h
		p.off, p.lineNo = off, lineNo
		p.line = append(p.line[:0], line...)
		p.rec = rebaseRecord(rec, line, p.line)
		n++
		if n == aheadLines {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// rebaseRecord returns rec, whose slices are of from or of memory of their
// own (the slow parser copies), with those of from made slices of to, a
// copy of from.
func rebaseRecord(rec record, from, to []byte) record {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(from)))
	at := func(s []byte) []byte {
		if len(s) == 0 {
			return s
		}
		p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
		if p < base || p-base+uintptr(len(s)) > uintptr(len(from)) {
			return s // not in from: the parser's own copy
		}
		i := int(p - base)
		return to[i : i+len(s) : i+len(s)]
	}
	rec.key, rec.body, rec.ts = at(rec.key), at(rec.body), at(rec.ts)
	return rec
}

// upsert returns the slot of the key whose canonical form is canon, adding
// it (isNew, slot zero) if it is not in the index yet. A key whose hash
// another key already has is told apart by reading that key's line: the
// second one goes to the overflow map.
func (v *lightView) upsert(canon []byte, h uint64) (sp *viewSlot, isNew bool, err error) {
	if len(v.table.overflow) > 0 {
		if s, ok := v.table.overflow[string(canon)]; ok {
			return s, false, nil
		}
	}
	sp = v.table.find(h)
	if sp == nil {
		return v.table.insert(h), true, nil
	}
	same, err := v.keyIs(*sp, canon)
	if err != nil {
		return nil, false, err
	}
	if same {
		return sp, false, nil
	}
	// Two keys with one 64-bit hash: rare enough that a map will do.
	s := new(viewSlot)
	if v.table.overflow == nil {
		v.table.overflow = make(map[string]*viewSlot)
	}
	v.table.overflow[string(canon)] = s
	return s, true, nil
}

// lookup returns the slot of the key canon, hashed to h, or nil. A key
// that is absent but shares its hash with one that is present is reported
// as present: the caller checks with keyIs when it reads the line.
func (v *lightView) lookup(canon []byte, h uint64) *viewSlot {
	if len(v.table.overflow) > 0 {
		if s, ok := v.table.overflow[string(canon)]; ok {
			return s
		}
	}
	return v.table.find(h)
}

// keyIs reports whether the line that s points at holds the key canon.
func (v *lightView) keyIs(s viewSlot, canon []byte) (bool, error) {
	line, err := v.journalOf(s).readLine(s.offset())
	if err != nil {
		return false, err
	}
	return lineKeyIs(line, canon), nil
}

func lineKeyIs(line, canon []byte) bool {
	_, ok := recordWithKey(line, canon)
	return ok
}

// recordWithKey parses line and reports whether it is a record of the key
// canon.
func recordWithKey(line, canon []byte) (record, bool) {
	rec, ok := parseRecord(line)
	if !ok {
		return rec, false
	}
	var buf [64]byte
	got, _, err := canonicalKey(buf[:0], rec.key)
	return rec, err == nil && bytes.Equal(got, canon)
}

func (v *lightView) journalOf(s viewSlot) *journal {
	if s.done() {
		return v.results
	}
	return v.errors
}

// viewSlot packs a key's latest outcome: bit 63 set for a result, and the
// offset of its latest line (in the results file for a result, in the
// errors file for an error) below.
type viewSlot uint64

const (
	viewDone = 1 << 63
	viewOff  = 1<<48 - 1
)

func newViewSlot(off int64, isResult bool) viewSlot {
	s := viewSlot(off) & viewOff
	if isResult {
		s |= viewDone
	}
	return s
}

func (s viewSlot) done() bool    { return s&viewDone != 0 }
func (s viewSlot) offset() int64 { return int64(s & viewOff) }

// keyTable maps 64-bit key hashes to slots: open addressing with linear
// probing, at most 3/4 full. Hash 0 marks an empty entry (a key hashing to
// 0 is stored as 1).
type keyTable struct {
	seed     maphash.Seed
	entries  []keyEntry
	mask     uint64
	n        int
	overflow map[string]*viewSlot // keys whose hash collided with another's
	touched  uint64               // see touch: keeps its loads
}

type keyEntry struct {
	h uint64
	s viewSlot
}

func (t *keyTable) init(seed maphash.Seed, hint int) {
	t.seed = seed
	n := max(16, 1<<bits.Len64(uint64(hint+hint/3)))
	t.entries = make([]keyEntry, n)
	t.mask = uint64(n - 1)
	t.n = 0
}

func (t *keyTable) hash(canon []byte) uint64 {
	return max(maphash.Bytes(t.seed, canon), 1)
}

// touch loads the table words where the searches for hs start, so that
// lookups of them a little later find them in cache. The loop does nothing
// else, so that all the loads are in flight at once.
func (t *keyTable) touch(hs []uint64) {
	var sum uint64
	for _, h := range hs {
		sum += t.entries[h&t.mask].h
	}
	t.touched += sum // keep the loads: their value is never used
}

func (t *keyTable) find(h uint64) *viewSlot {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		switch t.entries[i].h {
		case 0:
			return nil
		case h:
			return &t.entries[i].s
		}
	}
}

// insert adds h, which must not be in the table, and returns its slot.
func (t *keyTable) insert(h uint64) *viewSlot {
	if t.n+1 > len(t.entries)/4*3 {
		old := t.entries
		t.entries = make([]keyEntry, 2*len(old))
		t.mask = uint64(len(t.entries) - 1)
		for _, e := range old {
			if e.h != 0 {
				*t.place(e.h) = e
			}
		}
	}
	t.n++
	e := t.place(h)
	e.h = h
	return &e.s
}

func (t *keyTable) place(h uint64) *keyEntry {
	i := h & t.mask
	for t.entries[i].h != 0 {
		i = (i + 1) & t.mask
	}
	return &t.entries[i]
}

// A keyKind is the JSON type of a key as written.
type keyKind uint8

const (
	kindNumber    keyKind = 1 << iota // 42
	kindNumString                     // "42": Python's str(42), or a Go string key
	kindString                        // "abc"
	kindBool                          // true
	kindComposite                     // an object or an array
)

// keyKinds collects the kinds of a checkpoint's keys, with a first example
// of each for error messages.
type keyKinds struct {
	mask    keyKind
	example [8]string
}

func (k *keyKinds) add(kind keyKind, raw []byte) {
	if k.mask&kind == 0 {
		k.mask |= kind
		k.example[bits.TrailingZeros8(uint8(kind))] = string(raw[:min(len(raw), 40)])
	}
}

// class is the key type a checkpoint's keys make: "" when it has none.
// Keys written as strings of digits fit both numbers and strings.
func (k keyKinds) class() (name string, kind keyKind) {
	for _, c := range []struct {
		kind keyKind
		name string
	}{
		{kindComposite, "object or array"},
		{kindBool, "boolean"},
		{kindString, "string"},
		{kindNumber, "number"},
		{kindNumString, "number-like string"},
	} {
		if k.mask&c.kind != 0 {
			return c.name, c.kind
		}
	}
	return "", 0
}

// ErrKeyMismatch is returned (wrapped) by Compare when the two checkpoints'
// keys are of different types, such as numbers in one and words in the
// other: no key could match.
var ErrKeyMismatch = errors.New("the checkpoints' key types differ")

// checkKeyTypes fails with ErrKeyMismatch if a's keys and b's keys cannot
// be the same keys.
func checkKeyTypes(a, b *lightView) error {
	an, ak := a.kinds.class()
	bn, bk := b.kinds.class()
	switch {
	case ak == 0 || bk == 0 || ak == bk:
		return nil
	case ak == kindNumString && (bk == kindNumber || bk == kindString):
		return nil
	case bk == kindNumString && (ak == kindNumber || ak == kindString):
		return nil
	}
	return fmt.Errorf("checkpoint: compare: %w: %s has %s keys (such as %s), %s has %s keys (such as %s)",
		ErrKeyMismatch, a.ref, an, a.kinds.example[bits.TrailingZeros8(uint8(ak))],
		b.ref, bn, b.kinds.example[bits.TrailingZeros8(uint8(bk))])
}

// canonicalKey appends to dst the form in which keys are matched across
// checkpoints: a string's text (so "42", as Python writes str(42), matches
// the number 42 that Go writes), a number or a boolean as written, and an
// object or array as compact JSON.
func canonicalKey(dst, raw []byte) ([]byte, keyKind, error) {
	if len(raw) == 0 {
		return dst, 0, errors.New("empty key")
	}
	switch c := raw[0]; {
	case c == '"':
		start := len(dst)
		if len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 {
			dst = append(dst, raw[1:len(raw)-1]...)
		} else {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return dst, 0, fmt.Errorf("key %.40q: %w", raw, err)
			}
			dst = append(dst, s...)
		}
		if isJSONNumber(dst[start:]) {
			return dst, kindNumString, nil
		}
		return dst, kindString, nil
	case c == '{' || c == '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return dst, 0, fmt.Errorf("key %.40q: %w", raw, err)
		}
		return append(dst, buf.Bytes()...), kindComposite, nil
	case c == 't' || c == 'f':
		return append(dst, raw...), kindBool, nil
	case isJSONNumber(raw):
		return append(dst, raw...), kindNumber, nil
	}
	return dst, 0, fmt.Errorf("key %.40q is not a string, number, boolean, object or array", raw)
}

// lineReader reads lines at given offsets through a window of the file, so
// that offsets that come roughly in file order (two runs over the same
// items usually save them in about the same order) are served from memory,
// read in large blocks, while scattered ones cost one small read each.
type lineReader struct {
	f     io.ReaderAt
	path  string
	buf   []byte
	start int64 // file offset of buf[0]
	n     int   // valid bytes in buf
	win   int   // bytes to read on a miss
}

const (
	minWindow = 4 << 10
	maxWindow = 1 << 20
)

func newLineReader(j *journal) *lineReader {
	return &lineReader{f: j.f, path: j.path, win: minWindow}
}

// line returns the line at off without its newline. The slice is valid
// until the next call.
func (lr *lineReader) line(off int64) ([]byte, error) {
	end := lr.start + int64(lr.n)
	if off >= lr.start && off < end {
		if i := bytes.IndexByte(lr.buf[off-lr.start:lr.n], '\n'); i >= 0 {
			return lr.buf[off-lr.start : off-lr.start+int64(i)], nil
		}
	}
	// A miss just past the window means the reads go forward: read more at
	// a time. Elsewhere, go back to small reads.
	if off >= lr.start && off < end+int64(lr.win) {
		lr.win = min(2*lr.win, maxWindow)
	} else {
		lr.win = minWindow
	}
	want := lr.win
	for {
		if len(lr.buf) < want {
			lr.buf = make([]byte, want)
		}
		n, err := lr.f.ReadAt(lr.buf[:want], off)
		lr.start, lr.n = off, n
		if i := bytes.IndexByte(lr.buf[:n], '\n'); i >= 0 {
			return lr.buf[:i], nil
		}
		if err != nil {
			lr.n = 0
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("checkpoint: read %s: %w", lr.path, err)
		}
		want *= 2 // a line longer than the window
	}
}
