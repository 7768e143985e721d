package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// crashSnapshot copies the files of a running checkpoint into a new folder,
// as a SIGKILL at that moment would leave them (the lock aside: the kernel
// drops it with the process). The in-flight file is read through the file
// system, so what is copied is what a new process would see.
func crashSnapshot(t *testing.T, dir string) string {
	t.Helper()
	snap := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.Type().IsRegular() || filepath.Ext(e.Name()) == ".lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(snap, e.Name()), b, 0o644))
	}
	return snap
}

func flQuiet() Option { return WithLogger(slog.New(slog.DiscardHandler)) }

// crashWhileRunning runs Process over 0..n-1 in dir with one worker; item
// poison blocks until the files are snapshot, as if the process died then.
// It returns the snapshot.
func crashWhileRunning(t *testing.T, dir string, n, poison int, opts ...Option) string {
	t.Helper()
	r, err := Open[int, int]("job", append([]Option{WithDir(dir), flQuiet()}, opts...)...)
	require.NoError(t, err)
	defer r.Close()
	var snap string
	started := make(chan struct{})
	release := make(chan struct{})
	go func() {
		<-started
		snap = crashSnapshot(t, dir)
		close(release)
	}()
	_, err = r.Process(context.Background(), procInts(n), procKey, func(ctx context.Context, i int) (any, error) {
		if i == poison {
			close(started)
			<-release
			return nil, errors.New("not reached in the snapshot")
		}
		return i * 10, nil
	}) // one worker: nothing else is in flight at the snapshot
	require.NoError(t, err)
	return snap
}

// replaceDir replaces dst's files with src's: the next run starts from there.
func replaceDir(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, os.RemoveAll(dst))
	require.NoError(t, os.MkdirAll(dst, 0o755))
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
}

func TestInFlightCrashLoopGivesUp(t *testing.T) {
	const n, poison = 40, 17
	for _, maxAttempts := range []int{0, 1, 5} {
		t.Run("", func(t *testing.T) {
			dir := t.TempDir()
			// Three runs die with the poison in flight; each next Open counts it.
			for crash := 1; crash <= 3; crash++ {
				snap := crashWhileRunning(t, dir, n, poison, WithMaxAttempts(maxAttempts))
				replaceDir(t, snap, dir)
				st, err := ReadInFlight(dir, "job")
				require.NoError(t, err)
				assert.Contains(t, st.InFlight, json.RawMessage(`17`), "the slot file shows the key in flight")

				r, err := Open[int, int]("job", WithDir(dir), flQuiet(), WithMaxAttempts(maxAttempts))
				require.NoError(t, err)
				crashed := r.Crashed()
				require.Len(t, crashed, 1, "crash %d", crash)
				assert.Equal(t, Crash[int]{Key: poison, Crashes: crash, GaveUp: crash == 3}, crashed[0])
				// The other items in flight finished (they were saved), so
				// they are not counted.
				if crash < 3 {
					assert.Empty(t, r.AllErrors())
					require.NoError(t, r.Close())
					continue
				}
				errs := r.AllErrors()
				require.Len(t, errs, 1)
				assert.Equal(t, poison, errs[0].Key)
				assert.Equal(t, "in flight at 3 crashes (the process died: OOM, segfault or kill)", errs[0].Error)
				var got []int
				sum, err := r.Process(context.Background(), procInts(n), procKey, func(ctx context.Context, i int) (any, error) {
					got = append(got, i)
					return i, nil
				})
				require.NoError(t, err)
				assert.NotContains(t, got, poison, "a given-up key is not handed out")
				assert.Equal(t, 0, sum.Failed)
				for range r.Iterate([]int{poison}, procKey) {
					t.Fatal("Iterate handed out a given-up key")
				}
				require.NoError(t, r.Close())
			}
			// Later runs still skip it, and do not record it again.
			r, err := Open[int, int]("job", WithDir(dir), flQuiet(), WithMaxAttempts(maxAttempts))
			require.NoError(t, err)
			defer r.Close()
			assert.Empty(t, r.Crashed(), "a clean Close leaves nothing in flight")
			for range r.Iterate([]int{poison}, procKey) {
				t.Fatal("a given-up key came back on a later run")
			}
			errs := r.AllErrors()
			require.Len(t, errs, 1)
			assert.Equal(t, 1, errs[0].Attempts, "recorded once")
			done, _ := r.Progress()
			assert.Equal(t, n-1, done)
			st, err := ReadInFlight(dir, "job")
			require.NoError(t, err)
			assert.Empty(t, st.InFlight)
			require.Len(t, st.Crashes, 1)
			assert.Equal(t, CrashCount{Key: json.RawMessage(`17`), Crashes: 3, GaveUp: true}, st.Crashes[0])
		})
	}
}

func TestInFlightCrashCountForgivenOnSuccess(t *testing.T) {
	dir := t.TempDir()
	replaceDir(t, crashWhileRunning(t, dir, 10, 3), dir)
	r, err := Open[int, int]("job", WithDir(dir), flQuiet())
	require.NoError(t, err)
	require.Len(t, r.Crashed(), 1)
	require.NoError(t, r.SaveResult(3, 30))
	require.NoError(t, r.Close())
	_, err = os.Stat(filepath.Join(dir, "job_crashes.json"))
	require.NoError(t, err, "counts are updated at Open")

	r, err = Open[int, int]("job", WithDir(dir), flQuiet())
	require.NoError(t, err)
	defer r.Close()
	_, err = os.Stat(filepath.Join(dir, "job_crashes.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a key that completed is forgiven")
}

func TestInFlightMaxCrashesOption(t *testing.T) {
	for _, tc := range []struct {
		max    int
		gaveUp bool
	}{{1, true}, {2, false}, {0, false}} {
		dir := t.TempDir()
		replaceDir(t, crashWhileRunning(t, dir, 10, 3), dir)
		r, err := Open[int, int]("job", WithDir(dir), flQuiet(), WithMaxCrashes(tc.max))
		require.NoError(t, err)
		c := r.Crashed()
		require.Len(t, c, 1)
		assert.Equal(t, tc.gaveUp, c[0].GaveUp, "max %d", tc.max)
		assert.Equal(t, tc.gaveUp, len(r.AllErrors()) == 1)
		require.NoError(t, r.Close())
	}
	_, err := Open[int, int]("job", WithDir(t.TempDir()), WithMaxCrashes(-1))
	assert.Error(t, err)
}

func TestInFlightIterateOptIn(t *testing.T) {
	for _, track := range []bool{false, true} {
		dir := t.TempDir()
		opts := []Option{WithDir(dir), flQuiet()}
		if track {
			opts = append(opts, WithInFlightIterate())
		}
		r, err := Open[string, string]("it", opts...)
		require.NoError(t, err)
		var snap string
		for item := range r.Iterate([]string{"a", "b", "c"}, func(s string) string { return s }) {
			if item == "b" {
				snap = crashSnapshot(t, dir)
				break
			}
			require.NoError(t, r.SaveResult(item, 1))
		}
		// After the loop the slot is free: nothing in flight.
		st, err := ReadInFlight(dir, "it")
		require.NoError(t, err)
		assert.Empty(t, st.InFlight)
		require.NoError(t, r.Close())

		r, err = Open[string, string]("it", WithDir(snap), flQuiet())
		require.NoError(t, err)
		if track {
			assert.Equal(t, []Crash[string]{{Key: "b", Crashes: 1}}, r.Crashed())
		} else {
			assert.Empty(t, r.Crashed())
		}
		require.NoError(t, r.Close())
	}
}

func TestInFlightOffAndFresh(t *testing.T) {
	dir := t.TempDir()
	snap := crashWhileRunning(t, dir, 10, 3, WithoutInFlight())
	r, err := Open[int, int]("job", WithDir(snap), flQuiet())
	require.NoError(t, err)
	assert.Empty(t, r.Crashed(), "WithoutInFlight tracks nothing")
	require.NoError(t, r.Close())

	replaceDir(t, crashWhileRunning(t, dir, 10, 3), dir)
	r, err = Open[int, int]("job", WithDir(dir), flQuiet(), WithFresh())
	require.NoError(t, err)
	assert.Empty(t, r.Crashed(), "WithFresh forgets the crashes")
	require.NoError(t, r.Close())
}

// A slot whose key was saved after the slot was set counts as finished,
// whichever journal has the outcome; one saved only before does not.
func TestInFlightFinishedSince(t *testing.T) {
	r, err := Open[string, int]("f", WithDir(t.TempDir()), flQuiet())
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.SaveResult("old-ok", 1))
	require.NoError(t, r.SaveError("old-bad", errors.New("x")))
	m := r.journalMark()
	require.NoError(t, r.SaveResult("new-ok", 1))
	require.NoError(t, r.SaveError("new-bad", errors.New("x")))
	require.NoError(t, r.SaveError("old-ok", errors.New("later failure")))
	for k, want := range map[string]bool{"old-ok": true, "old-bad": false, "new-ok": true, "new-bad": true, "never": false} {
		assert.Equal(t, want, r.finishedSince(k, m), k)
	}
}

func TestReadFlightSlotsIgnoresPartialSlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x_inflight")
	buf := make([]byte, 3*flightPage+100) // a partial slot at the end
	mk := func(i int, state uint64, key string) {
		s := buf[i*flightPage:]
		putU64(s, state)
		copy(s[flightHeader:], key)
	}
	mk(0, flightSet|3, `"a"`)
	mk(1, 0, `"b"`)                          // cleared
	mk(2, flightSet|flightPageRoom+1, `"c"`) // impossible length
	require.NoError(t, os.WriteFile(path, buf, 0o644))
	recs, err := readFlightSlots(path)
	require.NoError(t, err)
	keys := make([]string, 0, len(recs))
	for _, r := range recs {
		keys = append(keys, string(r.key))
	}
	assert.Equal(t, []string{`"a"`}, slices.Clip(keys))
}

func putU64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// Many workers and a Close while a Process is still running must not fault:
// the slot memory stays mapped until the last worker lets go of it.
func TestInFlightCloseDuringProcess(t *testing.T) {
	r, err := Open[int, int]("c", WithDir(t.TempDir()), flQuiet())
	require.NoError(t, err)
	started := make(chan struct{}, 64)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Process(context.Background(), procInts(200), procKey, func(ctx context.Context, i int) (any, error) {
			started <- struct{}{}
			<-release
			return i, nil
		}, WithWorkers(64))
	}()
	for range 64 {
		<-started
	}
	require.NoError(t, r.Close())
	close(release)
	<-done
}
