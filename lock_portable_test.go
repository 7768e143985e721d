package checkpoint

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The lock works on every platform with a lock (flock(2) on Unix, LockFileEx
// on Windows): a second Open of a held checkpoint fails at once, Inspect
// sees it held without taking it, and Close releases it.
func TestLockHeldEverywhere(t *testing.T) {
	dir := t.TempDir()
	quiet := WithLogger(slog.New(slog.DiscardHandler))
	r, err := Open[int, int]("job", WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, r.SaveResult(1, 1))

	_, err = Open[int, int]("job", WithDir(dir), quiet)
	require.ErrorIs(t, err, ErrLocked)
	held, err := lockHeld(filepath.Join(dir, "job.lock"))
	require.NoError(t, err)
	require.True(t, held)
	_, _, err = Compact(dir, "job")
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, r.Close())
	held, err = lockHeld(filepath.Join(dir, "job.lock"))
	require.NoError(t, err)
	require.False(t, held)
	r, err = Open[int, int]("job", WithDir(dir), quiet)
	require.NoError(t, err)
	require.True(t, r.IsCompleted(1))
	require.NoError(t, r.Close())
}
