package checkpoint_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

type nilErr struct{ msg string }

func (e *nilErr) Error() string { return e.msg } // panics on a nil receiver

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("marshal exploded") }

// TestBadValuesFromUserCodeDoNotPanic: a typed-nil error and a result whose
// MarshalJSON panics are the item's problem, not a crash of the job.
func TestBadValuesFromUserCodeDoNotPanic(t *testing.T) {
	r := open[int](t, t.TempDir())
	var typedNil *nilErr
	require.NotPanics(t, func() { assert.NoError(t, r.SaveError(1, typedNil)) })
	require.Len(t, r.AllErrors(), 1)
	assert.Equal(t, "<nil>", r.AllErrors()[0].Error)

	require.NotPanics(t, func() { assert.Error(t, r.SaveResult(2, panicky{})) })
	assert.False(t, r.IsCompleted(2))

	// Through Process the same become recorded failures; the others go on.
	sum, err := r.Process(context.Background(), slices.Values([]int{3, 4, 5}), identity[int],
		func(_ context.Context, n int) (any, error) {
			switch n {
			case 3:
				return nil, typedNil
			case 4:
				return panicky{}, nil
			}
			return n, nil
		}, checkpoint.WithWorkers(2))
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Succeeded)
	assert.Equal(t, 2, sum.Failed)
	assert.True(t, r.IsCompleted(5))
	assert.Len(t, r.AllErrors(), 3)
}

func TestAllResultsReportsCloseMidLoop(t *testing.T) {
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(t.TempDir()), quiet)
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, r.SaveResult(i, i))
	}
	n := 0
	for range r.AllResults() {
		if n++; n == 10 {
			require.NoError(t, r.Close())
		}
	}
	assert.Less(t, n, 100)
	assert.ErrorIs(t, r.Err(), checkpoint.ErrClosed, "a partial read must not look whole")
}

func TestOpenLeavesOtherCheckpointsAlone(t *testing.T) {
	dir := t.TempDir()
	// A checkpoint whose name starts like another's meta temp file.
	other, err := checkpoint.Open[int, int]("a_meta.json.tmp-b", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, other.SaveResult(1, 1))
	require.NoError(t, other.Close())

	r := open[int](t, dir) // "job": unrelated
	require.NoError(t, r.Close())
	a, err := checkpoint.Open[int, int]("a", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, a.Close())

	_, err = os.Stat(filepath.Join(dir, "a_meta.json.tmp-b_results.jsonl"))
	require.NoError(t, err, "opening checkpoint a must not delete another checkpoint's files")
	other, err = checkpoint.Open[int, int]("a_meta.json.tmp-b", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	defer other.Close()
	assert.True(t, other.IsCompleted(1))
}

func TestNestedProcessDoesNotMoveTheOuterBar(t *testing.T) {
	var out safeBuffer
	b, err := checkpoint.OpenBatch[int, int]("job", checkpoint.WithDir(t.TempDir()), quiet,
		checkpoint.WithProgressWriter(&out))
	require.NoError(t, err)
	defer b.Close()
	for _, item := range b.IterateWithProgress([]int{1, 2}, identity[int], "outer") {
		if item == 1 {
			_, err := b.Process(context.Background(), slices.Values([]int{10, 11, 12}), identity[int],
				func(context.Context, int) (any, error) { return nil, errors.New("inner failure") })
			require.NoError(t, err)
		}
		require.NoError(t, b.SaveResult(item, item))
	}
	assert.Contains(t, out.String(), "2/2")
	assert.NotContains(t, out.String(), "3 failed", "the inner Process's failures are not the outer loop's")
}

// safeBuffer is a writer for the progress display, safe across goroutines.
type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
