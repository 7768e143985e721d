package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// durableFile tracks which bytes of a journal an fsync has covered: Sync
// marks as durable what was written before it started. Its fsync takes at
// least syncDelay, like a slow disk.
type durableFile struct {
	*os.File
	syncDelay time.Duration

	mu       sync.Mutex
	written  []byte // everything written, in order
	durable  int    // len(written) when the latest finished Sync started
	syncs    []time.Time
	afterUse bool // Sync came after Close
	closed   bool
}

func (f *durableFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.File.Write(p)
	f.written = append(f.written, p[:n]...)
	return n, err
}

func (f *durableFile) Sync() error {
	f.mu.Lock()
	upTo := len(f.written)
	f.syncs = append(f.syncs, time.Now())
	f.afterUse = f.afterUse || f.closed
	f.mu.Unlock()
	time.Sleep(f.syncDelay)
	err := f.File.Sync()
	f.mu.Lock()
	if err == nil && upTo > f.durable {
		f.durable = upTo
	}
	f.mu.Unlock()
	return err
}

func (f *durableFile) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return f.File.Close()
}

// isDurable reports whether marker is in the bytes an fsync has covered.
func (f *durableFile) isDurable(marker []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Contains(f.written[:f.durable], marker)
}

func (f *durableFile) syncTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.syncs...)
}

func withDurableFiles(delay time.Duration, files map[string]*durableFile) Option {
	var mu sync.Mutex
	return func(o *options) {
		o.wrapFile = func(f appendFile) appendFile {
			df := &durableFile{File: f.(*os.File), syncDelay: delay}
			name := f.(*os.File).Name()
			mu.Lock()
			files[name[bytes.LastIndexByte([]byte(name), '_'):]] = df
			mu.Unlock()
			return df
		}
	}
}

func TestSyncPolicyOption(t *testing.T) {
	// SyncNone and SyncAlways are constants, so no code can reassign them:
	// this line stops compiling if they become variables again.
	const none, always = SyncNone, SyncAlways
	assert.NotEqual(t, none, always)
	assert.Equal(t, "SyncNone", SyncNone.String())
	assert.Equal(t, "SyncAlways", SyncAlways.String())
	assert.Equal(t, "SyncInterval(50ms)", SyncInterval(50*time.Millisecond).String())
	var zero SyncPolicy
	assert.Equal(t, SyncNone, zero, "the zero value is SyncNone")
	_, err := Open[int, int]("job", WithDir(t.TempDir()), WithSync(SyncPolicy(-7)))
	require.Error(t, err, "a policy that is none of the three")
	assert.Contains(t, err.Error(), "unknown sync policy")
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := Open[int, int]("job", WithDir(t.TempDir()), WithSync(SyncInterval(d)))
		require.Error(t, err, "SyncInterval(%v)", d)
		assert.Contains(t, err.Error(), "interval")
	}
}

// TestSyncAlwaysGroupCommit: with SyncAlways, every save returns only once
// an fsync that started after its write has finished, and concurrent savers
// share fsyncs.
func TestSyncAlwaysGroupCommit(t *testing.T) {
	for _, journal := range []string{"_results.jsonl", "_errors.jsonl"} {
		t.Run(journal, func(t *testing.T) {
			files := map[string]*durableFile{}
			r, err := Open[string, int]("job", WithDir(t.TempDir()), WithSync(SyncAlways),
				withDurableFiles(time.Millisecond, files), WithLogger(quietLogger()))
			require.NoError(t, err)
			f := files[journal]
			const savers, each = 32, 20
			var wg sync.WaitGroup
			errs := make(chan error, savers*each)
			for g := range savers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						key := fmt.Sprintf("g%d-%d", g, i)
						var err error
						if journal == "_errors.jsonl" {
							err = r.SaveError(key, errors.New("boom"))
						} else {
							err = r.SaveResult(key, i)
						}
						if err != nil {
							errs <- err
							continue
						}
						if !f.isDurable(fmt.Appendf(nil, `"%s"`, key)) {
							errs <- fmt.Errorf("%s: the save returned before an fsync covered it", key)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			syncs := len(f.syncTimes())
			t.Logf("%d records, %d fsyncs", savers*each, syncs)
			assert.Less(t, syncs, savers*each/2, "concurrent saves share fsyncs")
			require.NoError(t, r.Close())
		})
	}
}

func TestSyncNoneSyncsOnlyAtClose(t *testing.T) {
	files := map[string]*durableFile{}
	r, err := Open[string, int]("job", WithDir(t.TempDir()), withDurableFiles(0, files), WithLogger(quietLogger()))
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, r.SaveResult(fmt.Sprint(i), i))
		require.NoError(t, r.SaveError(fmt.Sprint(-i), errors.New("x")))
	}
	assert.Empty(t, files["_results.jsonl"].syncTimes())
	assert.Empty(t, files["_errors.jsonl"].syncTimes())
	require.NoError(t, r.Close())
	for name, f := range files {
		assert.Len(t, f.syncTimes(), 1, "%s: Close syncs once", name)
	}
	assert.True(t, files["_results.jsonl"].isDurable([]byte(`"99"`)))
	assert.True(t, files["_errors.jsonl"].isDurable([]byte(`"-99"`)))
}

func TestSyncInterval(t *testing.T) {
	// Long enough that a test goroutine descheduled on a loaded machine
	// does not see the first background sync before it looks.
	const interval = 100 * time.Millisecond
	files := map[string]*durableFile{}
	r, err := Open[string, int]("job", WithDir(t.TempDir()), WithSync(SyncInterval(interval)),
		withDurableFiles(0, files), WithLogger(quietLogger()))
	require.NoError(t, err)
	f := files["_results.jsonl"]

	require.NoError(t, r.SaveResult("first", 1))
	assert.False(t, f.isDurable([]byte(`"first"`)), "a save does not wait for the disk")
	require.Eventually(t, func() bool { return f.isDurable([]byte(`"first"`)) }, 10*time.Second, time.Millisecond,
		"the background sync comes")

	// Saving without pause: the syncs keep at least the interval apart.
	deadline := time.Now().Add(10 * interval)
	for i := 0; time.Now().Before(deadline); i++ {
		require.NoError(t, r.SaveResult(fmt.Sprint(i), i))
		time.Sleep(100 * time.Microsecond)
	}
	times := f.syncTimes()
	require.GreaterOrEqual(t, len(times), 2)
	// The times are taken by the file wrapper, a little after the syncer
	// decided: a save in between may schedule the next sync from a point
	// slightly before the recorded one. Syncs that ignored the interval
	// would come back to back.
	const slack = 10 * time.Millisecond
	for i := 1; i < len(times); i++ {
		assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), interval-slack, "sync %d came too soon", i)
	}

	// A save just before Close: Close stops the pending background sync,
	// syncs itself, and nothing touches the file afterwards.
	require.NoError(t, r.SaveResult("last", 1))
	require.NoError(t, r.Close())
	assert.True(t, f.isDurable([]byte(`"last"`)))
	n := len(f.syncTimes())
	time.Sleep(3 * interval)
	assert.Len(t, f.syncTimes(), n, "no sync after Close")
	assert.False(t, f.afterUse)
	assert.Nil(t, r.results.sync.timer, "no background sync left scheduled")
}

// TestCloseWhileSavingWithSyncAlways: savers racing Close get nil or
// ErrClosed, never an error from syncing a closed file, and every nil save
// is there after reopening.
func TestCloseWhileSavingWithSyncAlways(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval(time.Millisecond), SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]*durableFile{}
			r, err := Open[string, int]("job", WithDir(dir), WithSync(policy), withDurableFiles(0, files), WithLogger(quietLogger()))
			require.NoError(t, err)
			var mu sync.Mutex
			var saved []string
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						key := fmt.Sprintf("g%d-%d", g, i)
						err := r.SaveResult(key, i)
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil {
							t.Errorf("save %s: %v", key, err)
							return
						}
						mu.Lock()
						saved = append(saved, key)
						mu.Unlock()
					}
				}()
			}
			time.Sleep(30 * time.Millisecond)
			require.NoError(t, r.Close())
			wg.Wait()
			assert.False(t, files["_results.jsonl"].afterUse, "a sync after Close")

			r, err = Open[string, int]("job", WithDir(dir), WithLogger(quietLogger()))
			require.NoError(t, err)
			defer r.Close()
			require.NotEmpty(t, saved)
			for _, k := range saved {
				require.True(t, r.IsCompleted(k), k)
			}
		})
	}
}

// TestSyncerWaitAfterClose: a saver whose write came before Close but whose
// wait comes after it gets the final sync's outcome, without an fsync of a
// file that is about to be closed.
func TestSyncerWaitAfterClose(t *testing.T) {
	for _, finalErr := range []error{nil, errors.New("disk gone")} {
		calls := 0
		s := newSyncer(SyncAlways, "f", func() error { calls++; return finalErr }, quietLogger())
		err := s.close()
		if finalErr == nil {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, finalErr)
		}
		require.Equal(t, 1, calls)
		err = s.saved()
		require.Equal(t, 1, calls, "no fsync after close")
		if finalErr == nil {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, finalErr)
		}
	}
}
