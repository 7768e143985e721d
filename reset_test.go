package checkpoint_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/require"
)

// resetFixture makes a checkpoint "job" with every file of the name: real
// journals, meta, runs and metrics, a real flow of the same name, and
// stand-ins for the files only a crash leaves (in-flight slots, crash counts,
// the flow's running marker) and a snapshot folder. It returns the names.
func resetFixture(t *testing.T, dir string) []string {
	t.Helper()
	r := open[int](t, dir)
	require.NoError(t, r.SaveResult(1, 1))
	require.NoError(t, r.SaveError(2, os.ErrInvalid))
	require.NoError(t, r.LogMetrics(map[string]float64{"loss": 0.5}))
	require.NoError(t, r.Close())
	f, err := checkpoint.NewFlow[int]("job", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	f.Step("one", func(context.Context, *int) error { return nil })
	_, err = f.Run(context.Background(), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	for _, n := range []string{"job_inflight", "job_crashes.json", "job_flow.running"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "job_snapshots", "s1"), 0o755))
	names := []string{"job_results.jsonl", "job_errors.jsonl", "job_meta.json", "job_runs.jsonl",
		"job_metrics.jsonl", "job_flow.json", "job_inflight", "job_crashes.json", "job_flow.running", "job_snapshots"}
	requireFiles(t, dir, names, "fixture lacks")
	return names
}

// requireFiles fails unless every one of names is in dir.
func requireFiles(t *testing.T, dir string, names []string, msg string) {
	t.Helper()
	for _, n := range names {
		_, err := os.Lstat(filepath.Join(dir, n))
		require.NoError(t, err, "%s %s", msg, n)
	}
}

// requireMoved fails unless reset left none of names in dir and, with
// backup, put every one of them in bak.
func requireMoved(t *testing.T, dir, bak string, names []string, backup bool) {
	t.Helper()
	for _, n := range names {
		_, err := os.Lstat(filepath.Join(dir, n))
		require.ErrorIs(t, err, os.ErrNotExist, "%s left behind by reset", n)
	}
	if backup {
		requireFiles(t, bak, names, "not in the backup:")
	}
}

func TestResetMovesEveryFileOfTheName(t *testing.T) {
	for _, backup := range []bool{true, false} {
		t.Run(map[bool]string{true: "backup", false: "delete"}[backup], func(t *testing.T) {
			dir := t.TempDir()
			names := resetFixture(t, dir)
			bak, err := checkpoint.Reset(dir, "job", backup)
			require.NoError(t, err)
			requireMoved(t, dir, bak, names, backup)
			if backup {
				// The old run history (the runner's run, the flow's run)
				// stays readable in the backup.
				runs, err := checkpoint.ReadRuns(bak, "job")
				require.NoError(t, err)
				require.Len(t, runs, 2)
			} else {
				require.Empty(t, bak)
			}

			// The next run starts from zero: no crash counts, one run.
			r := open[int](t, dir)
			require.Empty(t, r.Crashed())
			require.NoError(t, r.Close())
			runs, err := checkpoint.ReadRuns(dir, "job")
			require.NoError(t, err)
			require.Len(t, runs, 1)
			_, err = checkpoint.ReadFlowSteps(dir, "job")
			require.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

// A name that is only a flow (no journals, no meta) is reset like any other:
// its flow file, runs and snapshots move to the backup, or are deleted.
func TestResetFlowOnlyName(t *testing.T) {
	for _, backup := range []bool{true, false} {
		t.Run(map[bool]string{true: "backup", false: "delete"}[backup], func(t *testing.T) {
			dir := t.TempDir()
			f, err := checkpoint.NewFlow[int]("train", checkpoint.WithDir(dir), quiet)
			require.NoError(t, err)
			f.Step("one", func(context.Context, *int) error { return nil })
			_, err = f.Run(context.Background(), 0)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			_, err = checkpoint.Inspect(dir, "train")
			require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint, "the fixture is a flow only")

			bak, err := checkpoint.Reset(dir, "train", backup)
			require.NoError(t, err)
			_, err = checkpoint.ReadFlowSteps(dir, "train")
			require.ErrorIs(t, err, os.ErrNotExist)
			if backup {
				steps, err := checkpoint.ReadFlowSteps(bak, "train")
				require.NoError(t, err)
				require.Len(t, steps, 1)
			} else {
				require.Empty(t, bak)
			}
			_, err = checkpoint.Reset(dir, "train", backup)
			require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint, "nothing left to reset")
		})
	}
}

// pipelineFixture makes a closed pipeline "pipe" of two steps, each with a
// result and an error, and returns the names of their files.
func pipelineFixture(t *testing.T, dir string) []string {
	t.Helper()
	p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	for _, step := range []string{"fetch", "label"} {
		r, err := checkpoint.PipelineStep[int, string](p, step)
		require.NoError(t, err)
		require.NoError(t, r.SaveResult(1, "one"))
		require.NoError(t, r.SaveError(2, os.ErrInvalid))
	}
	require.NoError(t, p.Close())
	names := []string{"pipe_pipeline.json", "pipe_runs.jsonl"}
	for _, step := range []string{"pipe.fetch", "pipe.label"} {
		names = append(names, step+"_results.jsonl", step+"_errors.jsonl", step+"_meta.json")
	}
	requireFiles(t, dir, names, "fixture lacks")
	return names
}

// Reset of a pipeline's name moves every step's files and the order of the
// steps, not only the files of a checkpoint of that name (it had moved
// pipe_runs.jsonl alone and said it had reset the pipeline).
func TestResetPipeline(t *testing.T) {
	for _, backup := range []bool{true, false} {
		t.Run(map[bool]string{true: "backup", false: "delete"}[backup], func(t *testing.T) {
			dir := t.TempDir()
			names := pipelineFixture(t, dir)
			bak, err := checkpoint.Reset(dir, "pipe", backup)
			require.NoError(t, err)
			requireMoved(t, dir, bak, names, backup)
			p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
			require.NoError(t, err)
			defer p.Close()
			require.Empty(t, p.Steps(), "the next run starts with no steps")
			r, err := checkpoint.PipelineStep[int, string](p, "fetch")
			require.NoError(t, err)
			completed, _ := r.Progress()
			require.Zero(t, completed, "the step starts from zero")
			require.Empty(t, r.AllErrors(), "the step starts from zero")
		})
	}
}

// A pipeline's step holds a lock of its own name while it is open, so that
// a change of the step alone (retry, forget, compact, reset) is refused
// while the pipeline runs, instead of rewriting journals a live runner
// appends to.
func TestPipelineStepLocksItsName(t *testing.T) {
	dir := t.TempDir()
	pipelineFixture(t, dir)
	p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	r, err := checkpoint.PipelineStep[int, string](p, "fetch")
	require.NoError(t, err)
	changes := map[string]func() error{
		"retry": func() error {
			_, err := checkpoint.Retry(dir, "pipe.fetch", func(checkpoint.Failure[string]) bool { return true })
			return err
		},
		"forget":         func() error { _, err := checkpoint.Forget(dir, "pipe.fetch", "1"); return err },
		"compact":        func() error { _, _, err := checkpoint.Compact(dir, "pipe.fetch"); return err },
		"reset":          func() error { _, err := checkpoint.Reset(dir, "pipe.fetch", true); return err },
		"reset pipeline": func() error { _, err := checkpoint.Reset(dir, "pipe", true); return err },
	}
	for name, change := range changes {
		require.ErrorIs(t, change(), checkpoint.ErrLocked, "%s of a step while its pipeline runs", name)
	}
	v, err := checkpoint.Inspect(dir, "pipe.fetch")
	require.NoError(t, err)
	require.True(t, v.Info().Running, "a step is shown running while open")
	require.NoError(t, v.Close())
	require.NoError(t, r.SaveResult(3, "three"))
	require.NoError(t, p.Close())

	n, err := checkpoint.Retry(dir, "pipe.fetch", func(checkpoint.Failure[string]) bool { return true })
	require.NoError(t, err)
	require.Equal(t, 1, n, "once the pipeline is closed, the step can be changed")
}
