package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// In-flight tracking: which keys a run was working on when its process died.
//
// Every worker of Process (and, with WithInFlightIterate, every Iterate loop)
// owns a slot of a small side file, <name>_inflight, mapped into memory. When
// an item starts, its key and where the journals ended at that moment are
// copied into the slot, then the slot's header is set; when the item ends the
// header is cleared. These are stores to shared memory, not system calls: the
// kernel keeps them when the process dies, however it dies, and they cost
// nanoseconds. Nothing is synced: a power cut may lose them, and then only the
// crash count of that run is lost.
//
// At Open the slots of the previous run are read. A key in a set slot
// crashed with the process unless its latest outcome lies past the journal
// ends copied into the slot: then it finished and only the clearing of its
// slot was lost. So a kill at any moment never marks a finished item, and
// the journals, which in-flight tracking never writes, lose nothing.
//
// Each crash bumps the key's count in <name>_crashes.json (written
// atomically). At WithMaxCrashes crashes the key is recorded as failed and
// never handed out again, so one item that kills its process every time
// cannot turn a resumable job into an endless crash loop.

// flightSlotSize is the room for one key: keys longer than about 4 KiB of
// JSON are not tracked (and logged once).
const (
	flightSlotSize   = 4096
	flightHeader     = 24 // state word, results end, errors end
	flightKeyMax     = flightSlotSize - flightHeader
	flightChunkSlots = 16
	flightChunkSize  = flightSlotSize * flightChunkSlots
	flightSet        = 1 << 63 // in the state word, with the key's length below
	defaultCrashes   = 3
)

// crashMessage is the error recorded for a key given up after n crashes.
func crashMessage(n int) string {
	return fmt.Sprintf("in flight at %d crashes (the process died: OOM, segfault or kill)", n)
}

// extOptions are the options of pipelines, in-flight tracking and the cache.
type extOptions struct {
	maxCrashes   int
	crashesSet   bool
	trackIterate bool
	noTracking   bool
	disabled     bool
	backup       bool          // WithFresh moves the old files to a backup folder
	heldLock     bool          // a pipeline holds the lock
	backupLabel  string        // the backup folder's label; the name by default
	cacheErrors  bool          // read by Cached
	ttl          time.Duration // read by Cached
}

// WithMaxCrashes sets after how many crashes with a key in flight the key
// is given up: recorded as failed with the error "in flight at n crashes
// (the process died: OOM, segfault or kill)" and not handed out again, on
// this run or later ones. The default is 3; 0 never gives up (the crashes are
// still counted and reported). A given-up key runs again only after a
// SaveResult for it, Clear, WithFresh or a reset.
func WithMaxCrashes(n int) Option {
	return func(o *options) { o.ext.maxCrashes, o.ext.crashesSet = n, true }
}

// WithInFlightIterate tracks the items of Iterate and IterateSeq loops as in
// flight while the loop body runs, as Process always does. An item counts as
// ended when the body returns to the loop, whether or not it saved anything.
func WithInFlightIterate() Option {
	return func(o *options) { o.ext.trackIterate = true }
}

// WithoutInFlight turns in-flight tracking off, for Process too. Crashes are
// then neither counted nor reported.
func WithoutInFlight() Option {
	return func(o *options) { o.ext.noTracking = true }
}

// A Crash is a key that was in flight when a run died.
type Crash[K comparable] struct {
	Key     K
	Crashes int  // runs that died with this key in flight, counted over all runs
	GaveUp  bool // recorded as failed: at WithMaxCrashes crashes
}

// runnerExt is the Runner's state for in-flight tracking, WithDisabled and
// pipelines. Its zero value tracks nothing.
type runnerExt[K comparable] struct {
	flight       *flightFile // nil when tracking is off
	trackIterate bool
	tempDir      string // WithDisabled's folder, removed by Close

	mu        sync.Mutex
	crashed   []Crash[K]     // found at Open: in flight when the last run died
	poison    map[K]struct{} // given up: never handed out
	hasPoison atomic.Bool    // poison is not empty; pending looks at it only then

	// Suspects crashed before but are not given up. Each runs alone (the
	// write side of isolate; other items take the read side), so that an
	// item in flight beside a poisonous one is not blamed for its crashes.
	suspects    map[K]struct{}
	hasSuspects atomic.Bool
	isolate     sync.RWMutex
}

// flightFile is the mapped slot file. Slots are handed to workers; a slot
// is written only by its owner, without locks.
type flightFile struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	f      *os.File
	chunks [][]byte
	free   []*flightSlot
	held   int
	closed bool
	failed bool // mapping failed once: tracking is off for this run
	warned atomic.Bool
}

// A flightSlot is one worker's place in the slot file. A nil slot tracks
// nothing.
type flightSlot struct {
	ff   *flightFile
	mem  []byte
	buf  []byte // scratch for encoding keys
	iso  *sync.RWMutex
	mode int // how the current item holds iso: 0 not, 1 shared, 2 alone
}

// lockFor takes the checkpoint's lock (unless a pipeline holds it) and, for
// WithFresh, moves or deletes the files of in-flight tracking with the rest.
func (r *Runner[K, T]) lockFor(o *options) (*os.File, error) {
	var lock *os.File
	if !o.ext.heldLock {
		var err error
		if lock, err = lockFile(r.path(".lock")); err != nil {
			return nil, err
		}
	}
	if !o.fresh {
		return lock, nil
	}
	paths := append(r.dataFiles(), r.path("_results.jsonl"), r.path("_errors.jsonl"), r.path("_inflight"))
	if o.ext.backup {
		label := o.ext.backupLabel
		if label == "" {
			label = r.name
		}
		bak, err := backupFiles(r.dir, label, paths)
		if err != nil {
			if lock != nil {
				lock.Close()
			}
			return nil, err
		}
		if bak != "" {
			r.log.Info("checkpoint: moved the old files to a backup", "name", r.name, "backup", bak)
		}
		return lock, nil
	}
	if err := os.Remove(r.path("_inflight")); err != nil && !errors.Is(err, os.ErrNotExist) {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	return lock, nil
}

// crashesPath is in dataFiles: Clear and WithFresh delete it.
func (r *Runner[K, T]) crashesPath() string { return r.path("_crashes.json") }

// openInFlight runs at the end of Open: it reads what the last run left in
// flight, counts the crashes, gives up keys at WithMaxCrashes, and sets up
// tracking for this run.
func (r *Runner[K, T]) openInFlight(o *options) error {
	maxCrashes := defaultCrashes
	if o.ext.crashesSet {
		maxCrashes = o.ext.maxCrashes
	}
	if maxCrashes < 0 {
		return fmt.Errorf("checkpoint: max crashes is %d, want 0 (never give up) or more", maxCrashes)
	}
	x := &r.ext
	x.trackIterate = o.ext.trackIterate
	path := r.path("_inflight")
	stale, err := readFlightSlots(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("checkpoint: could not read the in-flight file; crashes of the last run are not counted", "file", path, "err", err)
	}
	counts, err := readCrashes(r.crashesPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("checkpoint: could not read the crash counts; counting from zero", "file", r.crashesPath(), "err", err)
	}
	changed := false
	for _, st := range stale {
		k, err := r.keys.decode(st.key)
		if err != nil {
			continue // not a key of this type: not ours to judge
		}
		if r.finishedSince(k, st.mark) {
			continue // it finished; only the clearing of its slot was lost
		}
		e := counts.get(st.key)
		e.Crashes++
		changed = true
		x.crashed = append(x.crashed, Crash[K]{Key: k, Crashes: e.Crashes})
		r.log.Warn("checkpoint: the last run died with this item in flight",
			"name", r.name, "key", string(st.key), "crashes", e.Crashes)
	}
	// A key that completed since is forgiven.
	for i := 0; i < len(counts.Keys); i++ {
		k, err := r.keys.decode(counts.Keys[i].Key)
		if err != nil {
			continue
		}
		r.mu.RLock()
		s, _ := r.index.get(k)
		r.mu.RUnlock()
		if s.done() {
			counts.Keys = slices.Delete(counts.Keys, i, i+1)
			i--
			changed = true
		}
	}
	for i := range counts.Keys {
		e := &counts.Keys[i]
		k, err := r.keys.decode(e.Key)
		if err != nil {
			continue
		}
		if maxCrashes == 0 || e.Crashes < maxCrashes {
			if x.suspects == nil {
				x.suspects = make(map[K]struct{})
			}
			x.suspects[k] = struct{}{}
			continue
		}
		if x.poison == nil {
			x.poison = make(map[K]struct{})
		}
		x.poison[k] = struct{}{}
		for j := range x.crashed {
			if x.crashed[j].Key == k {
				x.crashed[j].GaveUp = true
			}
		}
		if !e.Recorded {
			// The failure first: a kill before the counts are written
			// records it twice, never zero times.
			if err := r.SaveError(k, errors.New(crashMessage(e.Crashes))); err != nil {
				return err
			}
			r.log.Warn("checkpoint: gave up an item that was in flight at every crash",
				"name", r.name, "key", string(e.Key), "crashes", e.Crashes)
			e.Recorded, changed = true, true
		}
	}
	x.hasPoison.Store(len(x.poison) > 0)
	x.hasSuspects.Store(len(x.suspects) > 0)
	if changed {
		if err := counts.write(r.crashesPath(), r.rename); err != nil {
			return fmt.Errorf("checkpoint: write crash counts: %w", err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if !o.ext.noTracking && mmapSupported {
		x.flight = &flightFile{path: path, log: r.log}
	}
	return nil
}

// finishedSince reports whether k's latest outcome was saved after the
// journals ended at m.
func (r *Runner[K, T]) finishedSince(k K, m journalMark) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, seen := r.index.get(k)
	if !seen {
		return false
	}
	if s.done() {
		return s.offset() >= m.results
	}
	return s.offset() >= m.errors
}

// givenUp reports whether k crashed its process WithMaxCrashes times.
func (r *Runner[K, T]) givenUp(k K) bool {
	if !r.ext.hasPoison.Load() {
		return false
	}
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	_, ok := r.ext.poison[k]
	return ok
}

// forgetCrashes is called by Clear: its keys may run again.
func (r *Runner[K, T]) forgetCrashes() {
	r.ext.mu.Lock()
	r.ext.poison, r.ext.crashed, r.ext.suspects = nil, nil, nil
	r.ext.hasPoison.Store(false)
	r.ext.hasSuspects.Store(false)
	r.ext.mu.Unlock()
}

// Crashed returns the keys that were in flight when the previous run died,
// as found by Open, with their crash counts. It is empty after a clean Close
// and on a checkpoint without in-flight tracking.
func (r *Runner[K, T]) Crashed() []Crash[K] {
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	return slices.Clone(r.ext.crashed)
}

// yieldTracked yields item with k marked in flight in fl (if fl is not nil).
func (r *Runner[K, T]) yieldTracked(fl *flightSlot, k K, item T, yield func(T) bool) bool {
	if fl == nil {
		return yield(item)
	}
	r.begin(fl, k)
	ok := yield(item)
	fl.end()
	return ok
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

// begin marks k in flight in fl. A key that cannot be encoded, or is too
// long, is not marked. A suspect waits until it can run alone; while there
// are suspects, other keys wait while one runs.
func (r *Runner[K, T]) begin(fl *flightSlot, k K) {
	if fl == nil {
		return
	}
	if r.ext.hasSuspects.Load() {
		fl.iso = &r.ext.isolate
		if r.isSuspect(k) {
			fl.iso.Lock()
			fl.mode = 2
		} else {
			fl.iso.RLock()
			fl.mode = 1
		}
	}
	kb, err := r.keys.encode(fl.buf[:0], k)
	if err != nil {
		return
	}
	fl.buf = kb[:0]
	if len(kb) > flightKeyMax {
		if fl.ff.warned.CompareAndSwap(false, true) {
			fl.ff.log.Warn("checkpoint: a key too long to be tracked in flight", "name", r.name, "bytes", len(kb))
		}
		return
	}
	m := r.journalMark()
	fl.set(kb, m)
}

func (s *flightSlot) state() *uint64 { return (*uint64)(unsafe.Pointer(&s.mem[0])) }

// set writes the key and the mark, then the header: a kill between the two
// leaves the slot empty, never a header over a partial key.
func (s *flightSlot) set(key []byte, m journalMark) {
	atomic.StoreUint64(s.state(), 0)
	binary.LittleEndian.PutUint64(s.mem[8:], uint64(m.results))
	binary.LittleEndian.PutUint64(s.mem[16:], uint64(m.errors))
	copy(s.mem[flightHeader:], key)
	atomic.StoreUint64(s.state(), flightSet|uint64(len(key)))
}

func (s *flightSlot) end() {
	if s == nil {
		return
	}
	atomic.StoreUint64(s.state(), 0)
	switch s.mode {
	case 1:
		s.iso.RUnlock()
	case 2:
		s.iso.Unlock()
	}
	s.mode = 0
}

func (r *Runner[K, T]) isSuspect(k K) bool {
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	_, ok := r.ext.suspects[k]
	return ok
}

// acquire hands out a free slot, mapping a new chunk of the file if needed.
// It returns nil (no tracking) if ff is nil, closed, or the file cannot be
// mapped.
func (ff *flightFile) acquire() *flightSlot {
	if ff == nil {
		return nil
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.closed || ff.failed {
		return nil
	}
	if len(ff.free) == 0 {
		if err := ff.grow(); err != nil {
			ff.failed = true
			ff.log.Warn("checkpoint: in-flight tracking is off for this run", "file", ff.path, "err", err)
			return nil
		}
	}
	s := ff.free[len(ff.free)-1]
	ff.free = ff.free[:len(ff.free)-1]
	ff.held++
	return s
}

func (ff *flightFile) grow() error {
	if ff.f == nil {
		f, err := os.OpenFile(ff.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		ff.f = f
	}
	off := int64(len(ff.chunks)) * flightChunkSize
	if err := ff.f.Truncate(off + flightChunkSize); err != nil {
		return err
	}
	mem, err := mapChunk(ff.f, off, flightChunkSize)
	if err != nil {
		return err
	}
	ff.chunks = append(ff.chunks, mem)
	for i := flightChunkSlots - 1; i >= 0; i-- {
		ff.free = append(ff.free, &flightSlot{ff: ff, mem: mem[i*flightSlotSize : (i+1)*flightSlotSize : (i+1)*flightSlotSize], buf: make([]byte, 0, 64)})
	}
	return nil
}

// release gives the slot back, cleared.
func (s *flightSlot) release() {
	if s == nil {
		return
	}
	s.end()
	ff := s.ff
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.held--
	ff.free = append(ff.free, s)
	if ff.closed && ff.held == 0 {
		ff.unmap()
	}
}

// close removes the file: after a clean Close nothing is in flight. The
// memory stays mapped until the last slot is released, so a Process still
// running past Close (a misuse) cannot fault.
func (ff *flightFile) close() error {
	if ff == nil {
		return nil
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.closed {
		return nil
	}
	ff.closed = true
	var err error
	if ff.f != nil {
		if rerr := os.Remove(ff.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
	}
	if ff.held == 0 {
		err = errors.Join(err, ff.unmap())
	}
	return err
}

func (ff *flightFile) unmap() error {
	var err error
	for _, c := range ff.chunks {
		err = errors.Join(err, unmapChunk(c))
	}
	ff.chunks, ff.free = nil, nil
	if ff.f != nil {
		err = errors.Join(err, ff.f.Close())
		ff.f = nil
	}
	return err
}

// closeExt is called by Close after the journals are closed.
func (r *Runner[K, T]) closeExt() error {
	err := r.ext.flight.close()
	if r.ext.tempDir != "" {
		err = errors.Join(err, os.RemoveAll(r.ext.tempDir))
	}
	return err
}

// flightRecord is a set slot read back from the file.
type flightRecord struct {
	key  []byte
	mark journalMark
}

// readFlightSlots reads the set slots of a slot file.
func readFlightSlots(path string) ([]flightRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []flightRecord
	for off := 0; off+flightSlotSize <= len(b); off += flightSlotSize {
		s := b[off : off+flightSlotSize]
		st := binary.LittleEndian.Uint64(s)
		n := int(st &^ flightSet)
		if st&flightSet == 0 || n > flightKeyMax || n == 0 {
			continue
		}
		out = append(out, flightRecord{
			key: slices.Clone(s[flightHeader : flightHeader+n]),
			mark: journalMark{
				results: int64(binary.LittleEndian.Uint64(s[8:])),
				errors:  int64(binary.LittleEndian.Uint64(s[16:])),
			},
		})
	}
	return out, nil
}

// crashCounts is the content of <name>_crashes.json.
type crashCounts struct {
	Keys []crashCount `json:"keys"`
}

type crashCount struct {
	Key      json.RawMessage `json:"key"` // as in the journals
	Crashes  int             `json:"crashes"`
	Recorded bool            `json:"recorded"` // the give-up failure is saved
}

func readCrashes(path string) (crashCounts, error) {
	var c crashCounts
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return crashCounts{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// get returns the entry of key, adding it if missing.
func (c *crashCounts) get(key []byte) *crashCount {
	for i := range c.Keys {
		if string(c.Keys[i].Key) == string(key) {
			return &c.Keys[i]
		}
	}
	c.Keys = append(c.Keys, crashCount{Key: slices.Clone(key)})
	return &c.Keys[len(c.Keys)-1]
}

func (c crashCounts) write(path string, rename func(string, string) error) error {
	if len(c.Keys) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), rename)
}

// InFlightStatus is what the files of a checkpoint say about items in
// flight and crashes, read without opening it (see ReadInFlight).
type InFlightStatus struct {
	// InFlight are the keys (as JSON) marked in flight in the slot file: a
	// run holds the checkpoint and works on them, or a run died with them
	// in flight and no run has opened the checkpoint since.
	InFlight []json.RawMessage
	// Crashes are the keys that were in flight when a run died, with their
	// counts, as of the latest Open.
	Crashes []CrashCount
}

// A CrashCount is one key's entry in the crash counts.
type CrashCount struct {
	Key     json.RawMessage // as in the journals
	Crashes int
	GaveUp  bool // recorded as failed at WithMaxCrashes
}

// ReadInFlight reads the in-flight and crash files of the checkpoint name in
// dir, without taking its lock and without writing anything, for status
// tools. Missing files mean nothing in flight and no crashes.
func ReadInFlight(dir, name string) (InFlightStatus, error) {
	var st InFlightStatus
	if err := checkName(name); err != nil {
		return st, err
	}
	recs, err := readFlightSlots(filepath.Join(dir, name+"_inflight"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	for _, rec := range recs {
		st.InFlight = append(st.InFlight, json.RawMessage(rec.key))
	}
	c, err := readCrashes(filepath.Join(dir, name+"_crashes.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range c.Keys {
		st.Crashes = append(st.Crashes, CrashCount{Key: e.Key, Crashes: e.Crashes, GaveUp: e.Recorded})
	}
	return st, nil
}
