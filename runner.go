package checkpoint

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
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
	run         *runLog                             // this run in NAME_runs.jsonl (runs.go)
	backend     *remote                             // set by WithBackend: see backend_runner.go

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
	metaDue     atomic.Int64   // unix ns after which a save rewrites the meta
	metaBusy    atomic.Bool    // a background meta writer is under way
	metaWriters sync.WaitGroup // background meta writers, which Close waits for

	bufs  sync.Pool // *[]byte, for building errors lines
	lines sync.Pool // *lineBuilder, for building results lines

	ext runnerExt[K] // in-flight tracking, WithDisabled (inflight.go, disabled.go)
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
	if o.backend != nil {
		return openRemote[K, T](name, &o, keys)
	}
	tempDir, err := o.useTempDir() // WithDisabled
	if err != nil {
		return nil, err
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
	r.ext.tempDir = tempDir
	r.lock, err = r.lockFor(&o)
	if err != nil {
		r.closeExt()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("checkpoint: open %q in %s: %w", name, o.dir, ErrLocked)
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := finishRenames(o.dir, name, r.log); err != nil { // of a compact, retry, forget or reset killed midway
		r.closeFiles()
		r.closeExt()
		return nil, err
	}
	removeTemps(r.metaPath, r.log) // left by a run killed while writing the meta
	if err := r.load(&o); err != nil {
		r.closeFiles()
		r.closeExt()
		return nil, err
	}
	if err := r.openInFlight(&o); err != nil {
		r.closeFiles()
		r.closeExt()
		return nil, err
	}
	if err := r.startRun(&o); err != nil {
		r.closeFiles()
		r.closeExt()
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
		r.crashesPath(),
	}
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
	if r.backend != nil {
		return r.remoteIterate(slices.Values(items), keyFn, len(items))
	}
	return func(yield func(T) bool) {
		r.total.Store(int64(len(items)))
		var c cursor
		fl := r.iterateSlot() // nil unless WithInFlightIterate
		defer fl.release()
		var la lookahead[K] // keys read ahead for shuffled items: see keyAhead
		for i, item := range items {
			k, skip := r.keyAhead(&la, items, i, keyFn, &c)
			if skip {
				continue
			}
			if ok, s := r.pendingState(k, &c); ok && !r.yieldTracked(fl, k, s, item, yield) {
				return
			}
		}
	}
}

// IterateSeq is Iterate for a stream of items: it holds one item at a time,
// so its memory does not depend on the input's size. Progress's total counts
// the items seen so far.
func (r *Runner[K, T]) IterateSeq(items iter.Seq[T], keyFn func(T) K) iter.Seq[T] {
	if r.backend != nil {
		return r.remoteIterate(items, keyFn, -1)
	}
	return func(yield func(T) bool) {
		r.total.Store(0)
		var c cursor
		fl := r.iterateSlot() // nil unless WithInFlightIterate
		defer fl.release()
		for item := range items {
			r.total.Add(1)
			k := keyFn(item)
			if ok, s := r.pendingState(k, &c); ok && !r.yieldTracked(fl, k, s, item, yield) {
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
	ok, _ := r.pendingState(k, c)
	return ok
}

// pendingState is pending that also returns k's slot in the index (0 if k
// is not there), which in-flight tracking records.
func (r *Runner[K, T]) pendingState(k K, c *cursor) (bool, slot) {
	r.mu.RLock()
	s, seen := r.index.getNear(k, c)
	closed := r.closed
	r.mu.RUnlock()
	if closed {
		r.setErr(ErrClosed)
		return false, s
	}
	switch {
	case !seen:
		return true, s
	case s.done():
		return false, s
	default:
		return (r.maxAttempts == 0 || s.attempts() < r.maxAttempts) && !r.givenUp(k), s
	}
}

// IsCompleted reports whether key's latest outcome is a result.
func (r *Runner[K, T]) IsCompleted(key K) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, _ := r.index.get(key)
	return s.done()
}

// Progress returns the number of completed keys in the checkpoint and the
// number of items in the latest Iterate (for IterateSeq, the items seen so
// far; before any Iterate, the total stored by the previous run).
func (r *Runner[K, T]) Progress() (completed, total int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.completed, int(r.total.Load())
}

// Err returns the first error an iterator (Iterate, IterateSeq, AllResults)
// or AllErrors met, or nil. Iterators stop at an error; check Err after the
// loop, as with bufio.Scanner.
//
// Like bufio.Scanner's, the error is kept: it is the first one since Open,
// is never reset, and a later loop does not clear it. A Runner is one job's
// checkpoint, so an error in any of its loops means the job's view of it was
// incomplete; a new Runner (Close, then Open) starts without one. With
// loops on several goroutines, the first error of any of them is the one
// reported.
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
// meta. The run history and metrics are kept (see WithFresh). The runner
// stays open and usable, as if freshly created. Streams from AllResults that
// are under way stop.
func (r *Runner[K, T]) Clear() error {
	if r.backend != nil {
		return r.remoteClear()
	}
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
	r.forgetCrashes()
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
	if r.backend != nil {
		return r.remoteClose()
	}
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
	r.index.reset(0) // give its memory back now: mapped tables are not the GC's (index.go)
	r.mu.Unlock()
	r.metaWriters.Wait()
	err = errors.Join(err, r.results.sync.close(), r.errors.sync.close(), r.run.finish())
	return errors.Join(err, r.closeFiles(), r.closeExt())
}

func (r *Runner[K, T]) closeFiles() error {
	var err error
	for _, j := range []*journal{r.results, r.errors} {
		if j != nil {
			// Blocks reserved past the end are given back; keeping them
			// costs disk space only, so a failure is not Close's error.
			if rerr := j.giveBack(); rerr != nil {
				r.log.Warn("checkpoint: could not give back disk space reserved past the end", "file", j.path, "err", rerr)
			}
			err = errors.Join(err, j.f.Close())
		}
	}
	if r.lock != nil {
		err = errors.Join(err, r.lock.Close()) // closing drops the flock
	}
	return err
}
