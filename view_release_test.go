package checkpoint

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// A View gives its index back on Close (mapped tables are not the
// collector's to free), but not under a stream that is still reading it:
// closed inside the loop, the stream goes on to its end and the index goes
// when it ends. A stream started after Close reports ErrClosed.
func TestViewReleasesIndexAfterStreams(t *testing.T) {
	dir := t.TempDir()
	r := openQuiet[int, int](t, dir, "job")
	for i := range 100 {
		require.NoError(t, r.SaveResult(i, i))
	}
	require.NoError(t, r.SaveError(100, errors.New("boom")))
	require.NoError(t, r.Close())

	t.Run("close", func(t *testing.T) {
		v, err := Inspect(dir, "job")
		require.NoError(t, err)
		require.NotNil(t, v.ix)
		require.NoError(t, v.Close())
		require.Nil(t, v.ix, "Close released the index")
		for range v.Results() {
			t.Fatal("a stream after Close yielded")
		}
		require.ErrorIs(t, v.Err(), ErrClosed)
	})
	t.Run("close inside the loop", func(t *testing.T) {
		v, err := Inspect(dir, "job")
		require.NoError(t, err)
		n := 0
		for range v.Failures() {
			n++
			require.NoError(t, v.Close())
			require.NotNil(t, v.ix, "released under a running stream")
		}
		require.Equal(t, 1, n)
		require.Nil(t, v.ix, "released when the stream ended")
	})
}
