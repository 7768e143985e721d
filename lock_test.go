//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package checkpoint

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitFor returns the first report of p equal to want, failing the test if
// the program ends or the time runs out first.
func waitFor(t *testing.T, p *crashProc, want string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case ev, ok := <-p.events:
			require.True(t, ok, "the program ended before %q; stderr:\n%s", want, p.stderr)
			if ev == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %q from the program within %v; stderr:\n%s", want, limit, p.stderr)
		}
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	bin := buildCrashProg(t)
	dir := t.TempDir()
	holder := startCrashProg(t, bin, "-dir", dir, "-name", "job", "-mode", "hold")
	t.Cleanup(holder.kill)
	waitFor(t, holder, "opened", time.Minute)

	t.Run("Open in this process fails at once", func(t *testing.T) {
		start := time.Now()
		_, err := Open[string, int]("job", WithDir(dir))
		require.ErrorIs(t, err, ErrLocked)
		assert.Contains(t, err.Error(), `"job"`)
		assert.Less(t, time.Since(start), 5*time.Second, "Open waited for the lock")
	})

	t.Run("a second process fails at once", func(t *testing.T) {
		start := time.Now()
		p := startCrashProg(t, bin, "-dir", dir, "-name", "job", "-mode", "tryopen")
		waitFor(t, p, "locked", 30*time.Second)
		require.NoError(t, p.cmd.Wait())
		t.Logf("the second process saw ErrLocked and exited %v after it started", time.Since(start).Round(time.Millisecond))
	})

	t.Run("another name in the same folder is free", func(t *testing.T) {
		r, err := Open[string, int]("other", WithDir(dir))
		require.NoError(t, err)
		require.NoError(t, r.Close())
	})

	t.Run("a killed holder leaves no lock behind", func(t *testing.T) {
		holder.kill()
		r, err := Open[string, int]("job", WithDir(dir))
		require.NoError(t, err)
		require.NoError(t, r.Close())
		// The lock file stays; it is the flock on it that counts.
		require.FileExists(t, filepath.Join(dir, "job.lock"))
		p := startCrashProg(t, bin, "-dir", dir, "-name", "job", "-mode", "tryopen")
		waitFor(t, p, "opened", 30*time.Second)
		require.NoError(t, p.cmd.Wait())
	})
}

func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	r, err := Open[string, int]("job", WithDir(dir))
	require.NoError(t, err)

	// flock belongs to the open file, so a second runner in the same
	// process is refused too, not only one in another process.
	_, err = Open[string, int]("job", WithDir(dir))
	require.ErrorIs(t, err, ErrLocked)
	_, err = Open[int, string]("job", WithDir(dir))
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, r.Close())
	r2, err := Open[string, int]("job", WithDir(dir))
	require.NoError(t, err, "Close releases the lock")
	require.NoError(t, r2.Close())
	require.True(t, errors.Is(r2.Close(), ErrClosed))
}
