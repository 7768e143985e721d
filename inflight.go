package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// In-flight tracking: which keys a run was working on when its process died.
//
// Every worker of Process (and, with WithInFlightIterate, every Iterate,
// IterateSeq or IterateWithProgress loop) owns a slot of a small side file,
// <name>_inflight (inflight_file.go). When an item starts, its key and the
// key's state in the index at that moment are put into the slot, then the
// slot's state word is set; when the item ends the word is cleared. Where
// the file can be mapped into memory these are plain stores to shared
// memory, not system calls: the kernel keeps them when the process dies,
// however it dies, and they cost nanoseconds (inflight_track.go). Elsewhere
// (Windows) each is a WriteAt. Nothing is synced: a power cut may lose
// them, and then only the crash count of that run is lost.
//
// At Open the slots of the previous run are read. A key in a set slot
// crashed with the process unless its state in the journals differs from
// the one copied into the slot: every save appends a line, which moves the
// key's offset, so then it was saved after it started, it finished, and
// only the clearing of its slot was lost. So a kill at any moment never
// marks a finished item, and the journals, which in-flight tracking never
// writes, lose nothing.
//
// Each crash bumps the key's count in <name>_crashes.json (written
// atomically). At WithMaxCrashes crashes the key is recorded as failed and
// never handed out again, so one item that kills its process every time
// cannot turn a resumable job into an endless crash loop.

const defaultCrashes = 3

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
	peek         bool          // Open leaves the in-flight and crash files alone
	cacheErrors  bool          // read by Cached
	ttl          time.Duration // read by Cached
	noMmap       bool          // write slots with WriteAt, as where there is no mmap (tests)
}

// WithMaxCrashes sets after how many crashes with a key in flight the key
// is given up: recorded as failed with the error "in flight at n crashes
// (the process died: OOM, segfault or kill)" and not handed out again, on
// this run or later ones. The default is 3; 0 never gives up (the crashes are
// still counted and reported). A given-up key runs again only after a
// SaveResult for it, Clear, WithFresh or a reset.
//
// Until then, a key that was in flight at a crash runs alone: Process's other
// workers wait while it runs, so that items in flight beside a poisonous
// one are not blamed for its crashes. (A Process or tracked Iterate started
// from inside the body of another one on the same runner could then wait
// for itself: don't nest them while keys are suspect.)
func WithMaxCrashes(n int) Option {
	return func(o *options) { o.ext.maxCrashes, o.ext.crashesSet = n, true }
}

// WithInFlightIterate tracks the items of Iterate and IterateSeq loops as in
// flight while the loop body runs, as Process always does. An item counts as
// ended when the body returns to the loop, whether or not it saved anything.
// BatchRunner's IterateWithProgress tracks too. It costs a few nanoseconds
// per item where the slot file is mapped into memory, a WriteAt per start
// and end of an item where it is not (Windows); see the README.
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
	form         keyForm     // how keys go into slots
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
	if o.ext.peek {
		return nil // a pipeline's Summary, counting a step it has not opened
	}
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
		if r.finishedAfter(k, st) {
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
	if !o.ext.noTracking {
		x.form = keyFormOf[K]()
		x.flight = &flightFile{path: path, log: r.log, writeAt: !mmapSupported || o.ext.noMmap}
	}
	return nil
}

// finishedAfter reports whether k, found in flight in rec, was saved after
// it started: its state in the index moved (every save appends a line, at
// a new offset). Slots of the first version hold the journals' ends.
func (r *Runner[K, T]) finishedAfter(k K, rec flightRecord) bool {
	if !rec.v2 {
		return r.finishedSince(k, rec.mark)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	now, _ := r.index.get(k)
	return now != rec.then
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

// closeExt is called by Close after the journals are closed.
func (r *Runner[K, T]) closeExt() error {
	err := r.ext.flight.close()
	if r.ext.tempDir != "" {
		err = errors.Join(err, os.RemoveAll(r.ext.tempDir))
	}
	return err
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
