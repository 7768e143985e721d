package checkpoint

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrLocked is returned (wrapped) by Open when another Runner, in this
	// process or another one, holds the checkpoint.
	ErrLocked = errors.New("checkpoint is in use by another runner")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("checkpoint is closed")
	// ErrCorrupt is returned (wrapped, with the file and line) by Open when a
	// line that is not a record is followed by one that is: damage in the
	// middle of a file. Bad lines at the end are repaired as a torn tail.
	ErrCorrupt = errors.New("corrupt checkpoint file")
)

// A Runner makes a loop over items resumable. It records the outcome of each
// item, by key, in append-only JSONL files, and on the next run skips the keys
// that are completed.
//
// A Runner is made by Open and is safe for concurrent use by many goroutines.
// It holds its checkpoint exclusively until Close.
type Runner[K comparable, T any] struct {
	name        string
	dir         string
	maxAttempts int
	log         *slog.Logger
	keys        keyCodec[K]
	lock        *os.File
	metaPath    string
	rename      func(oldpath, newpath string) error // os.Rename but in fault tests

	mu        sync.RWMutex
	closed    bool
	index     *index[K] // per key: its state and where its latest line is
	completed int
	failed    int
	results   *journal
	errors    *journal
	lastTS    time.Time // of the latest record; new ones go strictly after it
	startedAt time.Time
	gen       uint64 // bumped by Clear, so streams over the old files stop

	total atomic.Int64 // items in the latest Iterate

	errMu sync.Mutex
	err   error // the first error an iterator met

	metaMu      sync.Mutex
	metaWritten time.Time

	bufs  sync.Pool // *[]byte, for building errors lines
	lines sync.Pool // *lineBuilder, for building results lines
}

// slot is the per-key state, packed in one word to keep resume memory small:
//
//	bit 63     the latest outcome is a result
//	bits 48-62 failed attempts recorded, over all runs (saturating)
//	bits 0-47  offset of the key's latest line: in the results file when
//	           completed, in the errors file when failed
type slot uint64

const (
	slotDone     = 1 << 63
	attemptShift = 48
	attemptMax   = 1<<15 - 1
	offsetMask   = 1<<attemptShift - 1
)

func (s slot) done() bool    { return s&slotDone != 0 }
func (s slot) attempts() int { return int(s>>attemptShift) & attemptMax }
func (s slot) offset() int64 { return int64(s & offsetMask) }
func (s slot) result(off int64) slot {
	return slotDone | slot(s.attempts())<<attemptShift | slot(off)
}
func (s slot) failure(off int64) slot {
	return slot(min(s.attempts()+1, attemptMax))<<attemptShift | slot(off)
}

// Open opens the checkpoint called name, creating it if needed, and loads
// what earlier runs recorded. It repairs a torn last line left by a crash,
// removes temporary files left by a crash while the meta file was rewritten,
// and rebuilds a missing or damaged meta file. It fails with an error wrapping
// ErrLocked if another Runner holds the checkpoint, and with one wrapping
// ErrCorrupt if a line in the middle of a file is damaged (WithSkipCorrupt
// opens past such lines).
//
// K must survive a JSON round trip: pointers, interfaces, channels and funcs
// are refused, as are structs with unexported fields.
func Open[K comparable, T any](name string, opts ...Option) (*Runner[K, T], error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if o.maxAttempts < 0 {
		return nil, fmt.Errorf("checkpoint: max attempts is %d, want 0 (no limit) or more", o.maxAttempts)
	}
	if err := o.sync.check(); err != nil {
		return nil, err
	}
	keys, err := newKeyCodec[K]()
	if err != nil {
		return nil, err
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if err := makeDir(o.dir); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if o.rename == nil {
		o.rename = os.Rename
	}
	r := &Runner[K, T]{
		name:        name,
		dir:         o.dir,
		maxAttempts: o.maxAttempts,
		log:         o.logger,
		keys:        keys,
		metaPath:    filepath.Join(o.dir, name+"_meta.json"),
		rename:      o.rename,
	}
	r.lock, err = lockFile(filepath.Join(o.dir, name+".lock"))
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("checkpoint: open %q in %s: %w", name, o.dir, ErrLocked)
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	removeTemps(r.metaPath, r.log) // left by a run killed while writing the meta
	if err := r.load(&o); err != nil {
		r.closeFiles()
		return nil, err
	}
	return r, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("checkpoint: empty name")
	case strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, os.PathSeparator):
		return fmt.Errorf("checkpoint: name %q has a path separator", name)
	case strings.Contains(name, ".."), name == ".":
		return fmt.Errorf("checkpoint: name %q could reach outside the folder", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("checkpoint: name %q has a NUL byte", name)
	}
	return nil
}

func (r *Runner[K, T]) path(suffix string) string {
	return filepath.Join(r.dir, r.name+suffix)
}

// dataFiles are the files Clear and WithFresh delete, besides the journals.
func (r *Runner[K, T]) dataFiles() []string {
	return []string{
		r.metaPath,
		r.path("_results.jsonl.torn"),
		r.path("_errors.jsonl.torn"),
		r.path("_results.jsonl.corrupt"),
		r.path("_errors.jsonl.corrupt"),
	}
}

// load opens the journals and builds the index. Errors come first so that a
// result can be compared with the key's latest error.
func (r *Runner[K, T]) load(o *options) error {
	if o.fresh {
		for _, p := range append(r.dataFiles(), r.path("_results.jsonl"), r.path("_errors.jsonl")) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	var err error
	if r.errors, err = openJournal(r.path("_errors.jsonl"), o); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if r.results, err = openJournal(r.path("_results.jsonl"), o); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	r.index = newIndex(r.keys.hash, r.results.estimateLines()+r.errors.estimateLines())

	// Keys go into the index in file order, so a key's latest line wins.
	addError := func(off int64, sp *slot) {
		if *sp == 0 {
			r.failed++
		}
		*sp = sp.failure(off)
	}
	if err := r.loadJournal(r.errors, addError); err != nil {
		return err
	}
	addResult := func(off int64, sp *slot) {
		switch s := *sp; {
		case s == 0:
			r.completed++
		case !s.done():
			if !r.resultIsNewer(off, s.offset()) {
				return
			}
			r.failed--
			r.completed++
		}
		*sp = sp.result(off)
	}
	if err := r.loadJournal(r.results, addResult); err != nil {
		return err
	}
	r.lastTS = r.lastTimestamp(r.results)
	if t := r.lastTimestamp(r.errors); t.After(r.lastTS) {
		r.lastTS = t
	}

	m, merr := readMeta(r.metaPath)
	switch {
	case merr == nil:
		r.startedAt = m.StartedAt
		r.total.Store(int64(m.TotalItems))
	case errors.Is(merr, os.ErrNotExist) && r.results.size == 0 && r.errors.size == 0:
	default:
		r.log.Warn("checkpoint: rebuilt the meta file from the JSONL files", "file", r.metaPath, "reason", merr)
	}
	if r.startedAt.IsZero() {
		r.startedAt = time.Now()
	}
	if r.completed+r.failed > 0 {
		r.log.Info("checkpoint: resumed", "name", r.name, "completed", r.completed, "failed", r.failed)
	}
	return r.writeMeta()
}

// lastTimestamp returns the time of a journal's last record, so that new
// records are stamped after it even if the clock went back between runs.
func (r *Runner[K, T]) lastTimestamp(j *journal) time.Time {
	if j.size == 0 {
		return time.Time{}
	}
	// Find the start of the last line: read back from the end.
	start := j.size - 1
	buf := make([]byte, 4096)
	for start > 0 {
		from := max(0, start-int64(len(buf)))
		n, _ := j.f.ReadAt(buf[:start-from], from)
		if i := lastIndexNewline(buf[:n]); i >= 0 {
			start = from + int64(i) + 1
			break
		}
		start = from
	}
	line, err := j.readLine(start)
	if err != nil {
		return time.Time{}
	}
	rec, ok := parseRecord(line)
	if !ok {
		return time.Time{}
	}
	t, _ := parseTimestamp(rec.ts)
	return t
}

func lastIndexNewline(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}

// Iterate returns an iterator over the items whose key is not completed, in
// order. A key is looked up when the loop reaches its item, so a duplicate key
// later in items is skipped once the first one is saved. A failed key is
// yielded again unless it has used up WithMaxAttempts. Breaking out of the
// loop is fine. Progress's total becomes len(items).
//
// If the runner is closed the iterator yields nothing and Err reports
// ErrClosed.
func (r *Runner[K, T]) Iterate(items []T, keyFn func(T) K) iter.Seq[T] {
	return func(yield func(T) bool) {
		r.total.Store(int64(len(items)))
		var c cursor
		for _, item := range items {
			if r.pending(keyFn(item), &c) && !yield(item) {
				return
			}
		}
	}
}

// IterateSeq is Iterate for a stream of items: it holds one item at a time,
// so its memory does not depend on the input's size. Progress's total counts
// the items seen so far.
func (r *Runner[K, T]) IterateSeq(items iter.Seq[T], keyFn func(T) K) iter.Seq[T] {
	return func(yield func(T) bool) {
		r.total.Store(0)
		var c cursor
		for item := range items {
			r.total.Add(1)
			if r.pending(keyFn(item), &c) && !yield(item) {
				return
			}
		}
	}
}

// pending reports whether the item with key k still has to be done. After
// Close it reports false and records ErrClosed for Err. c is the caller's
// place in the index (see index.findNear): items usually come in the order
// their keys were saved.
func (r *Runner[K, T]) pending(k K, c *cursor) bool {
	r.mu.RLock()
	s, seen := r.index.getNear(k, c)
	closed := r.closed
	r.mu.RUnlock()
	if closed {
		r.setErr(ErrClosed)
		return false
	}
	switch {
	case !seen:
		return true
	case s.done():
		return false
	default:
		return r.maxAttempts == 0 || s.attempts() < r.maxAttempts
	}
}

// SaveResult records result, which must marshal to JSON, as the outcome for
// key. The latest outcome of a key wins: this clears an earlier failure and
// replaces an earlier result. When it returns nil the record has been handed
// to the operating system in one write, so it survives the death of the
// process; with SyncAlways it is also on stable storage (see WithSync). On
// error nothing is recorded for key, except when the fsync of SyncAlways
// fails: the record was written, counts as saved and survives the death of
// the process, but may not survive a power cut.
func (r *Runner[K, T]) SaveResult(key K, result any) error {
	// The line is built in a pooled buffer, result encoded in place: with
	// json.Marshal every result was allocated and copied once more.
	lb := r.getLineBuilder()
	defer r.putLineBuilder(lb)
	b := &lb.buf
	b.WriteString(`{"key":`)
	kb, keyErr := r.keys.encode(b.AvailableBuffer(), key)
	b.Write(kb)
	b.WriteString(`,"result":`)
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
	b.WriteString(`,"timestamp":"`)
	b.Write(appendTimestamp(b.AvailableBuffer(), now))
	b.WriteString("\"}\n")
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
	at := len(line) - len("\"}\n") - len(tsLayout)
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

// IsCompleted reports whether key's latest outcome is a result.
func (r *Runner[K, T]) IsCompleted(key K) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, _ := r.index.get(key)
	return s.done()
}

// Result decodes key's latest result into v, as json.Unmarshal would. It
// reads from disk. found is false, with a nil error, if key is not completed.
func (r *Runner[K, T]) Result(key K, v any) (found bool, err error) {
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
	type entry struct {
		key K
		s   slot
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		r.setErr(ErrClosed)
		return nil
	}
	entries := make([]entry, 0, r.failed)
	for _, e := range r.index.entries {
		if !e.s.done() {
			entries = append(entries, entry{e.key, e.s})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.s.offset(), b.s.offset()) })
	out := make([]Failure[K], 0, len(entries))
	for _, e := range entries {
		line, err := r.errors.readLine(e.s.offset())
		if err != nil {
			r.setErr(err)
			return out
		}
		msg, ts := errorFields(line)
		out = append(out, Failure[K]{Key: e.key, Error: msg, Attempts: e.s.attempts(), Time: ts})
	}
	return out
}

// Progress returns the number of completed keys in the checkpoint and the
// number of items in the latest Iterate (for IterateSeq, the items seen so
// far; before any Iterate, the total stored by the previous run).
func (r *Runner[K, T]) Progress() (completed, total int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.completed, int(r.total.Load())
}

// Meta returns the checkpoint's summary as of now.
func (r *Runner[K, T]) Meta() Meta {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.metaLocked()
}

func (r *Runner[K, T]) metaLocked() Meta {
	return Meta{
		Name:           r.name,
		StartedAt:      r.startedAt,
		LastUpdated:    time.Now(),
		TotalItems:     int(r.total.Load()),
		CompletedItems: r.completed,
		FailedItems:    r.failed,
		SchemaVersion:  SchemaVersion,
	}
}

// maybeWriteMeta refreshes the meta file at most about once a second. The
// record is already safe, so a failure here is logged, not returned.
func (r *Runner[K, T]) maybeWriteMeta() {
	if !r.metaMu.TryLock() {
		return // another goroutine is writing it
	}
	defer r.metaMu.Unlock()
	if time.Since(r.metaWritten) < time.Second {
		return
	}
	if err := r.writeMetaLocked(); err != nil {
		r.log.Warn("checkpoint: could not update the meta file", "file", r.metaPath, "err", err)
	}
}

func (r *Runner[K, T]) writeMeta() error {
	r.metaMu.Lock()
	defer r.metaMu.Unlock()
	return r.writeMetaLocked()
}

// writeMetaLocked writes the meta file atomically. r.metaMu must be held.
func (r *Runner[K, T]) writeMetaLocked() error {
	r.mu.RLock()
	closed := r.closed
	b, err := r.metaLocked().marshal()
	r.mu.RUnlock()
	if closed {
		return nil
	}
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.metaPath, b, r.rename); err != nil {
		return fmt.Errorf("checkpoint: write meta: %w", err)
	}
	r.metaWritten = time.Now()
	return nil
}

// Err returns the first error an iterator (Iterate, IterateSeq, AllResults)
// or AllErrors met, or nil. Iterators stop at an error; check Err after the
// loop, as with bufio.Scanner.
func (r *Runner[K, T]) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *Runner[K, T]) setErr(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
}

// Clear deletes all data of this checkpoint: every result, error and the
// meta. The runner stays open and usable, as if freshly created. Streams
// from AllResults that are under way stop.
func (r *Runner[K, T]) Clear() error {
	r.metaMu.Lock()
	defer r.metaMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	err := errors.Join(r.results.truncate(), r.errors.truncate())
	for _, p := range r.dataFiles() {
		if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	r.index.reset(0)
	r.completed, r.failed = 0, 0
	r.total.Store(0)
	r.startedAt = time.Now()
	r.gen++
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("checkpoint: clear: %w", err)
	}
	return r.writeMetaLocked()
}

// Close writes the meta file, syncs the journals to stable storage (on every
// SyncPolicy, after stopping and waiting for SyncInterval's background sync),
// closes the files and releases the checkpoint for the next Runner. Methods
// called afterwards return ErrClosed, as does a second Close.
func (r *Runner[K, T]) Close() error {
	r.metaMu.Lock()
	defer r.metaMu.Unlock()
	r.mu.RLock()
	closed := r.closed
	r.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := r.writeMetaLocked()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err = errors.Join(err, r.results.sync.close(), r.errors.sync.close())
	return errors.Join(err, r.closeFiles())
}

func (r *Runner[K, T]) closeFiles() error {
	var err error
	for _, j := range []*journal{r.results, r.errors} {
		if j != nil {
			err = errors.Join(err, j.f.Close())
		}
	}
	if r.lock != nil {
		err = errors.Join(err, r.lock.Close()) // closing drops the flock
	}
	return err
}
