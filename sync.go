package checkpoint

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A SyncPolicy says when the records a Runner writes are forced from the
// operating system's cache to stable storage (fsync). Every policy survives
// the death of the process: a record is handed to the kernel in one write
// before SaveResult returns. The policy decides what survives an operating
// system crash or a power cut. Use SyncNone, SyncAlways or SyncInterval; the
// zero value is SyncNone.
//
// A policy is a plain value: SyncNone and SyncAlways are constants, so no
// code can change what they mean for the rest of the program.
type SyncPolicy int64

// The policies without a parameter.
const (
	// SyncNone, the default, never forces records to disk while the runner
	// is open; the operating system writes them back within seconds. A power
	// cut may lose the records saved in those last seconds. Close syncs.
	SyncNone SyncPolicy = 0

	// SyncAlways makes SaveResult and SaveError return only once their
	// record is on stable storage. Savers running at the same time share
	// each fsync (group commit), so many goroutines are not limited to one
	// fsync per record.
	SyncAlways SyncPolicy = -1
)

// syncBadInterval is SyncInterval of a duration of 0 or less, refused by
// Open.
const syncBadInterval SyncPolicy = -2

type syncKind uint8

const (
	syncNone syncKind = iota
	syncAlways
	syncInterval
	syncInvalid
)

// A positive policy is SyncInterval of that many nanoseconds.
func (p SyncPolicy) kind() syncKind {
	switch {
	case p == SyncNone:
		return syncNone
	case p == SyncAlways:
		return syncAlways
	case p > 0:
		return syncInterval
	}
	return syncInvalid
}

func (p SyncPolicy) interval() time.Duration { return time.Duration(p) }

// SyncInterval forces records to stable storage in the background, at most
// once every d and no later than about d after a record was saved: a power
// cut loses at most the records saved in the last d (plus the time one fsync
// takes). Saves never wait for the disk. The fsync runs on a goroutine that
// exists only while records are waiting for it; Close stops it and waits for
// it. d must be more than 0: Open refuses the policy otherwise.
func SyncInterval(d time.Duration) SyncPolicy {
	if d <= 0 {
		return syncBadInterval
	}
	return SyncPolicy(d)
}

// WithSync sets when saved records are forced to stable storage. The default
// is SyncNone. Whatever the policy, the meta file is replaced atomically
// (temporary file, fsync, rename, fsync of the folder), and Close syncs the
// journals before it returns.
func WithSync(p SyncPolicy) Option {
	return func(o *options) { o.sync = p }
}

func (p SyncPolicy) String() string {
	switch p.kind() {
	case syncNone:
		return "SyncNone"
	case syncAlways:
		return "SyncAlways"
	case syncInterval:
		return fmt.Sprintf("SyncInterval(%v)", p.interval())
	}
	if p == syncBadInterval {
		return "SyncInterval(<= 0)"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int64(p))
}

func (p SyncPolicy) check() error {
	if p == syncBadInterval {
		return fmt.Errorf("checkpoint: %v: the interval must be more than 0", p)
	}
	if p.kind() == syncInvalid {
		return fmt.Errorf("checkpoint: unknown sync policy %v", p)
	}
	return nil
}

// syncer forces one journal to stable storage according to a policy.
//
// Group commit: a saver that must wait for the disk joins the open round,
// which collects every write that no running fsync is sure to cover. When no
// fsync is running, one waiter leads: it closes the round and makes one fsync
// for all its members, while the next savers gather in a new round. So with
// many savers each fsync covers many records, and none waits for more than
// the fsync under way plus its own round's.
type syncer struct {
	policy SyncPolicy
	sync   func() error // the file's fsync
	path   string
	log    *slog.Logger

	mu     sync.Mutex
	cond   sync.Cond // signalled when a round is settled
	open   *syncRound
	busy   bool // a leader's fsync is running
	closed bool

	timer   *time.Timer    // SyncInterval: the pending background sync
	flushes sync.WaitGroup // SyncInterval: background syncs scheduled or running
	bgErr   error          // SyncInterval: the first background sync that failed
}

// syncRound is a set of writes that one fsync covers.
type syncRound struct {
	done bool
	err  error
}

func newSyncer(p SyncPolicy, path string, sync func() error, log *slog.Logger) *syncer {
	s := &syncer{policy: p, sync: sync, path: path, log: log, open: &syncRound{}}
	s.cond.L = &s.mu
	return s
}

// saved is called after a record was written to the journal, outside the
// runner's lock. With SyncAlways it returns once the record is on stable
// storage, or the fsync's error.
func (s *syncer) saved() error {
	switch s.policy.kind() {
	case syncAlways:
		if err := s.wait(); err != nil {
			return fmt.Errorf("checkpoint: sync %s: %w", s.path, err)
		}
	case syncInterval:
		s.schedule()
	}
	return nil
}

// wait returns once an fsync that started after the call has finished, with
// its error: it covers every write that completed before the call.
func (s *syncer) wait() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rd := s.open
	for !rd.done {
		if s.busy {
			s.cond.Wait()
			continue
		}
		s.lead()
	}
	return rd.err
}

// lead runs one fsync for the open round. s.mu is held on entry and exit and
// released during the fsync, so new writes gather in a fresh round meanwhile.
func (s *syncer) lead() *syncRound {
	rd := s.open
	s.open = &syncRound{}
	s.busy = true
	s.mu.Unlock()
	err := s.sync()
	s.mu.Lock()
	rd.done, rd.err = true, err
	s.busy = false
	s.cond.Broadcast()
	return rd
}

// schedule makes sure a background sync will run within the interval.
func (s *syncer) schedule() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.timer != nil {
		return
	}
	s.flushes.Add(1)
	s.timer = time.AfterFunc(s.policy.interval(), s.flush)
}

func (s *syncer) flush() {
	defer s.flushes.Done()
	s.mu.Lock()
	s.timer = nil
	s.mu.Unlock()
	// Records saved from now on schedule the next sync, at least a full
	// interval away: syncs are never closer together than the interval.
	if err := s.wait(); err != nil {
		s.log.Error("checkpoint: background sync failed; records saved lately may not survive a power cut",
			"file", s.path, "err", err)
		s.mu.Lock()
		if s.bgErr == nil {
			s.bgErr = err
		}
		s.mu.Unlock()
	}
}

// close stops background syncs, waits for a running one, and syncs whatever
// was written. The caller has made sure nothing more is written. Later calls
// of wait return the final sync's outcome without touching the file.
func (s *syncer) close() error {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil && s.timer.Stop() {
		s.flushes.Done() // it will not run
	}
	s.timer = nil
	s.mu.Unlock()
	s.flushes.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	for s.busy {
		s.cond.Wait()
	}
	final := s.lead()
	// Nothing was written after Close began, so this sync covered every
	// record: settle the round that late waiters will find with its outcome.
	s.open.done, s.open.err = true, final.err
	err := final.err
	if err != nil {
		err = fmt.Errorf("checkpoint: sync %s: %w", s.path, err)
	}
	if s.bgErr != nil {
		err = errors.Join(err, fmt.Errorf("checkpoint: background sync of %s failed earlier: %w", s.path, s.bgErr))
	}
	return err
}

// makeDir creates dir and any missing parents, and syncs each folder that
// gained an entry, so that a new checkpoint folder survives a power cut as
// its files do.
func makeDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}
