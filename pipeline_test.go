package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func openPipe(t *testing.T, dir string, opts ...Option) *Pipeline[int] {
	t.Helper()
	p, err := OpenPipeline[int]("pipe", append([]Option{WithDir(dir), flQuiet()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestPipelineStepsFilesOrderAndSummary(t *testing.T) {
	dir := t.TempDir()
	p := openPipe(t, dir)
	gen, err := PipelineStep[int, int](p, "generate")
	require.NoError(t, err)
	pre, err := PipelineStep[int, string](p, "preprocess")
	require.NoError(t, err)
	_, err = PipelineStep[int, int](p, "generate")
	assert.Error(t, err, "a step is opened once")
	_, err = PipelineStep[int, int](p, "a/b")
	assert.Error(t, err)

	for i := range 5 {
		require.NoError(t, pre.SaveResult(i, i))
	}
	require.NoError(t, pre.SaveError(5, errors.New("bad")))
	require.NoError(t, gen.SaveResult(0, 1))

	// One lock for the whole pipeline.
	_, err = OpenPipeline[int]("pipe", WithDir(dir), flQuiet())
	assert.ErrorIs(t, err, ErrLocked)

	sum, err := p.Summary()
	require.NoError(t, err)
	assert.Equal(t, []StepSummary{
		{Step: "generate", Completed: 1},
		{Step: "preprocess", Completed: 5, Failed: 1},
	}, sum)
	require.NoError(t, p.Close())
	assert.ErrorIs(t, gen.SaveResult(1, 1), ErrClosed, "the pipeline's Close closes its steps")
	assert.ErrorIs(t, p.Close(), ErrClosed)
	assert.Contains(t, dirNames(t, dir), "pipe.preprocess_results.jsonl")
	assert.Contains(t, dirNames(t, dir), "pipe.generate_meta.json")
	assert.NotContains(t, dirNames(t, dir), "pipe.generate.lock", "steps take no lock of their own")

	// The next run keeps the order of first opening, and sums up steps it
	// has not opened from their files.
	p = openPipe(t, dir)
	post, err := PipelineStep[int, int](p, "postprocess")
	require.NoError(t, err)
	require.NoError(t, post.SaveResult(9, 9))
	assert.Equal(t, []string{"generate", "preprocess", "postprocess"}, p.Steps())
	sum, err = p.Summary()
	require.NoError(t, err)
	assert.Equal(t, []StepSummary{
		{Step: "generate", Completed: 1},
		{Step: "preprocess", Completed: 5, Failed: 1},
		{Step: "postprocess", Completed: 1},
	}, sum)
}

// Step 2 takes step 1's results as input: while step 1 runs in the same
// process, and on a later run.
func TestPipelineStepReadsPreviousStep(t *testing.T) {
	dir := t.TempDir()
	p := openPipe(t, dir)
	one, err := PipelineStep[int, int](p, "one")
	require.NoError(t, err)
	two, err := PipelineStep[int, int](p, "two")
	require.NoError(t, err)
	ctx := context.Background()
	step1 := make(chan error, 1)
	firstHalf := make(chan struct{})
	go func() {
		_, err := one.Process(ctx, procInts(100), procKey, func(ctx context.Context, i int) (any, error) {
			if i == 50 {
				<-firstHalf // step 2 runs over what is there so far
			}
			return i * 2, nil
		}, WithWorkers(1))
		step1 <- err
	}()
	// Step 2 over step 1's results so far, again and again until step 1 is done.
	feedTwo := func() int {
		n := 0
		for k, raw := range one.AllResults() {
			var v int
			require.NoError(t, json.Unmarshal(raw, &v))
			if two.IsCompleted(k) {
				continue
			}
			require.NoError(t, two.SaveResult(k, v+1))
			n++
		}
		require.NoError(t, one.Err())
		return n
	}
	for {
		done, _ := one.Progress()
		if done >= 50 {
			break
		}
		feedTwo()
	}
	close(firstHalf)
	require.NoError(t, <-step1)
	feedTwo()
	n2, _ := two.Progress()
	assert.Equal(t, 100, n2)
	require.NoError(t, p.Close())

	// A later run: step 1 is done; step 2 was reset and runs from step 1's files.
	p = openPipe(t, dir)
	bak, err := p.ResetStep("two")
	require.NoError(t, err)
	assert.NotEmpty(t, bak)
	one, err = PipelineStep[int, int](p, "one")
	require.NoError(t, err)
	two, err = PipelineStep[int, int](p, "two")
	require.NoError(t, err)
	n0, _ := two.Progress()
	require.Equal(t, 0, n0)
	assert.Equal(t, 100, feedTwo())
	var v int
	found, err := two.Result(7, &v)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, 15, v)
}

func TestPipelineResetBacksUp(t *testing.T) {
	dir := t.TempDir()
	p := openPipe(t, dir)
	a, err := PipelineStep[int, int](p, "a")
	require.NoError(t, err)
	require.NoError(t, a.SaveResult(1, 1))
	_, err = p.ResetStep("a")
	assert.Error(t, err, "an open step is not reset")
	_, err = p.Reset()
	assert.Error(t, err)
	require.NoError(t, a.Close())
	bak, err := p.Reset()
	require.NoError(t, err)
	assert.Equal(t, "pipe.bak-", filepath.Base(bak)[:9])
	assert.Contains(t, dirNames(t, bak), "pipe.a_results.jsonl")
	assert.Contains(t, dirNames(t, bak), "pipe_pipeline.json")
	assert.Empty(t, p.Steps())
	bak, err = p.ResetStep("a")
	require.NoError(t, err)
	assert.Empty(t, bak, "nothing to back up")
}

func TestPipelineFreshAndDisabled(t *testing.T) {
	dir := t.TempDir()
	p := openPipe(t, dir)
	a, err := PipelineStep[int, int](p, "a")
	require.NoError(t, err)
	require.NoError(t, a.SaveResult(1, 1))
	require.NoError(t, p.Close())

	// -no-checkpoint: everything runs, nothing in the folder changes.
	before := dirNames(t, dir)
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	opts := AddFlags(fs)
	require.NoError(t, fs.Parse([]string{"--no-checkpoint"}))
	p = openPipe(t, dir, opts()...)
	a, err = PipelineStep[int, int](p, "a")
	require.NoError(t, err)
	var got []int
	for i := range a.Iterate([]int{1, 2}, procKey) {
		got = append(got, i)
		require.NoError(t, a.SaveResult(i, i))
	}
	assert.Equal(t, []int{1, 2}, got, "read nothing")
	n := 0
	for range a.AllResults() {
		n++
	}
	assert.Equal(t, 2, n, "this run's results are there for the next step")
	// A checkpointed run may go on at the same time.
	q, err := OpenPipeline[int]("pipe", WithDir(dir), flQuiet())
	require.NoError(t, err)
	require.NoError(t, q.Close())
	require.NoError(t, p.Close())
	assert.Equal(t, before, dirNames(t, dir), "wrote nothing")

	// -reset-checkpoint: from zero, the old files in a backup.
	fs = flag.NewFlagSet("job", flag.ContinueOnError)
	opts = AddFlags(fs)
	require.NoError(t, fs.Parse([]string{"-reset-checkpoint"}))
	p = openPipe(t, dir, opts()...)
	a, err = PipelineStep[int, int](p, "a")
	require.NoError(t, err)
	assert.False(t, a.IsCompleted(1))
	var baks []string
	for _, n := range dirNames(t, dir) {
		if filepath.Ext(n) != ".lock" && len(n) > 9 && n[:9] == "pipe.bak-" {
			baks = append(baks, n)
		}
	}
	require.Len(t, baks, 1)
	assert.Contains(t, dirNames(t, filepath.Join(dir, baks[0])), "pipe.a_results.jsonl")

	fs = flag.NewFlagSet("job", flag.ContinueOnError)
	opts = AddFlags(fs)
	require.NoError(t, fs.Parse(nil))
	assert.Empty(t, opts())
}

func TestRunnerDisabled(t *testing.T) {
	dir := t.TempDir()
	r, err := Open[int, int]("d", WithDir(dir), flQuiet())
	require.NoError(t, err)
	require.NoError(t, r.SaveResult(1, 1))
	require.NoError(t, r.Close())
	before := dirNames(t, dir)

	r, err = Open[int, int]("d", WithDir(dir), flQuiet(), WithDisabled())
	require.NoError(t, err)
	temp := r.dir
	assert.NotEqual(t, dir, temp)
	assert.False(t, r.IsCompleted(1), "read nothing")
	sum, err := r.Process(context.Background(), procInts(3), procKey, func(ctx context.Context, i int) (any, error) { return i, nil })
	require.NoError(t, err)
	assert.Equal(t, 3, sum.Succeeded)
	assert.Len(t, r.AllErrors(), 0)
	require.NoError(t, r.Close())
	_, err = os.Stat(temp)
	assert.ErrorIs(t, err, os.ErrNotExist, "Close removes the temporary folder")
	assert.Equal(t, before, dirNames(t, dir))
}

// A pipeline whose process died with items in flight reports them per step.
func TestPipelineSummaryInFlight(t *testing.T) {
	dir := t.TempDir()
	p := openPipe(t, dir)
	a, err := PipelineStep[int, int](p, "a")
	require.NoError(t, err)
	var snap string
	_, err = a.Process(context.Background(), procInts(5), procKey, func(ctx context.Context, i int) (any, error) {
		if i == 2 {
			snap = crashSnapshot(t, dir)
		}
		return i, nil
	})
	require.NoError(t, err)
	require.NoError(t, p.Close())

	// Before any run opens the step again, from its files.
	q := openPipe(t, snap)
	sum, err := q.Summary()
	require.NoError(t, err)
	require.Len(t, sum, 1)
	assert.Equal(t, 1, sum[0].InFlight)
	assert.LessOrEqual(t, sum[0].Completed, 2, "from the meta file, which may lag by a second")
	a, err = PipelineStep[int, int](q, "a")
	require.NoError(t, err)
	sum, err = q.Summary()
	require.NoError(t, err)
	assert.Equal(t, []StepSummary{{Step: "a", Completed: 2, InFlight: 1}}, sum, "from the journals once open")
	assert.Equal(t, []Crash[int]{{Key: 2, Crashes: 1}}, a.Crashed())
}
