package checkpoint_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

func TestFlowAndPipelineRecordRuns(t *testing.T) {
	dir := t.TempDir()
	f, err := checkpoint.NewFlow[int]("train", checkpoint.WithDir(dir), quiet, checkpoint.WithParams(map[string]int{"lr": 3}))
	require.NoError(t, err)
	f.Step("one", func(context.Context, *int) error { return nil })
	_, err = f.Run(context.Background(), 0)
	require.NoError(t, err)
	runs, err := checkpoint.ReadRuns(dir, "train")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, checkpoint.RunRunning, runs[0].Status)
	require.NoError(t, f.Close())
	runs, err = checkpoint.ReadRuns(dir, "train")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, checkpoint.RunFinished, runs[0].Status)
	require.JSONEq(t, `{"lr":3}`, string(runs[0].Params))

	p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	s, err := checkpoint.PipelineStep[int, int](p, "fetch")
	require.NoError(t, err)
	require.NoError(t, s.SaveResult(1, 10))
	require.NoError(t, p.Close())
	runs, err = checkpoint.ReadRuns(dir, "pipe")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, checkpoint.RunFinished, runs[0].Status)
}

// lastRun is the latest run of name in dir.
func lastRun(t *testing.T, dir, name string) checkpoint.Run {
	t.Helper()
	runs, err := checkpoint.ReadRuns(dir, name)
	require.NoError(t, err)
	require.NotEmpty(t, runs)
	return runs[len(runs)-1]
}

// TestFlowRunCounts: a flow's run counts the steps that finished in it,
// done or failed, each once by its latest outcome.
func TestFlowRunCounts(t *testing.T) {
	dir := t.TempDir()
	fail := true
	newFlow := func() *checkpoint.Flow[int] {
		f, err := checkpoint.NewFlow[int]("train", checkpoint.WithDir(dir), quiet)
		require.NoError(t, err)
		f.Step("one", func(context.Context, *int) error { return nil })
		f.Step("two", func(context.Context, *int) error { return nil })
		f.Step("three", func(context.Context, *int) error {
			if fail {
				return errors.New("boom")
			}
			return nil
		})
		f.Step("four", func(context.Context, *int) error { return nil })
		return f
	}
	for _, tc := range []struct {
		name              string
		runs              []bool // fail step three on each Run of the run
		completed, failed int
	}{
		{"two steps done, the third failed", []bool{true}, 2, 1},
		{"resumed: the third and fourth done", []bool{false}, 2, 0},
		{"nothing left to run", []bool{false}, 0, 0},
		{"restarted, failed, run again: the third counts once", nil, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow()
			if tc.runs == nil { // the last case
				fail = true
				_, err := f.Run(context.Background(), 0, checkpoint.Restart())
				require.Error(t, err)
				fail = false
				_, err = f.Run(context.Background(), 0)
				require.NoError(t, err)
			}
			for _, failThree := range tc.runs {
				fail = failThree
				_, err := f.Run(context.Background(), 0)
				require.Equal(t, failThree, err != nil, "%v", err)
			}
			require.NoError(t, f.Close())
			run := lastRun(t, dir, "train")
			assert.Equal(t, checkpoint.RunFinished, run.Status)
			assert.Equal(t, tc.completed, run.Completed, "completed")
			assert.Equal(t, tc.failed, run.Failed, "failed")
		})
	}
}

// TestPipelineRunCounts: a pipeline's run counts the items its steps saved
// during the run, over all its steps.
func TestPipelineRunCounts(t *testing.T) {
	dir := t.TempDir()
	next := 0 // fetch's next new key
	run := func(fetch, parse, failed int, reopen bool) {
		t.Helper()
		p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
		require.NoError(t, err)
		f, err := checkpoint.PipelineStep[int, int](p, "fetch")
		require.NoError(t, err)
		for k := range fetch {
			require.NoError(t, f.SaveResult(next, k))
			next++
		}
		for range failed {
			require.NoError(t, f.SaveError(next, errors.New("boom")))
			next++
		}
		if reopen { // closed and opened again in the same run: counted once
			require.NoError(t, f.Close())
			f, err = checkpoint.PipelineStep[int, int](p, "fetch")
			require.NoError(t, err)
			require.NoError(t, f.SaveResult(next, 0))
			next++
		}
		s, err := checkpoint.PipelineStep[int, string](p, "parse")
		require.NoError(t, err)
		for k := range parse {
			require.NoError(t, s.SaveResult(next+k, "parsed"))
		}
		require.NoError(t, p.Close())
	}
	for _, tc := range []struct {
		name                  string
		fetch, parse, failed  int
		reopen                bool
		completed, wantFailed int
	}{
		{"first run", 5, 3, 2, false, 8, 2},
		{"second run, a step reopened", 1, 0, 0, true, 2, 0},
		{"nothing saved", 0, 0, 0, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(tc.fetch, tc.parse, tc.failed, tc.reopen)
			r := lastRun(t, dir, "pipe")
			assert.Equal(t, checkpoint.RunFinished, r.Status)
			assert.Equal(t, tc.completed, r.Completed, "completed")
			assert.Equal(t, tc.wantFailed, r.Failed, "failed")
		})
	}
	// Summary of a step not opened in this run peeks at its files: no run
	// of the step.
	before, err := checkpoint.ReadRuns(dir, "pipe.parse")
	require.NoError(t, err)
	p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	_, err = p.Summary()
	require.NoError(t, err)
	require.NoError(t, p.Close())
	after, err := checkpoint.ReadRuns(dir, "pipe.parse")
	require.NoError(t, err)
	assert.Len(t, after, len(before))
}

// startRunProg starts runprog with args and waits for its "ready".
func startRunProg(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("runprog %v: %q %v: %s", args, line, err, stderr.String())
	}
	return cmd
}

// TestFlowAndPipelineCrashedSIGKILL kills real processes that hold a flow
// and a pipeline: their runs show as crashed with the counts they reached,
// before the next open and after it.
func TestFlowAndPipelineCrashedSIGKILL(t *testing.T) {
	bin := buildRunProg(t)
	for _, tc := range []struct {
		name              string
		args              []string
		reopen            func(dir string) (close func() error)
		completed, failed int
	}{
		{"pipeline", []string{"pipeline", "", "pipe", "30", "4"}, func(dir string) func() error {
			p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
			require.NoError(t, err)
			return p.Close
		}, 60, 4},
		{"flow", []string{"flow", "", "pipe"}, func(dir string) func() error {
			f, err := checkpoint.NewFlow[int]("pipe", checkpoint.WithDir(dir), quiet)
			require.NoError(t, err)
			return f.Close
		}, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.args[1] = dir
			cmd := startRunProg(t, bin, tc.args...)
			assert.Equal(t, checkpoint.RunRunning, lastRun(t, dir, "pipe").Status, "its process is alive")
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()

			check := func(r checkpoint.Run) {
				t.Helper()
				assert.Equal(t, checkpoint.RunCrashed, r.Status)
				assert.Equal(t, tc.completed, r.Completed, "completed")
				assert.Equal(t, tc.failed, r.Failed, "failed")
				assert.Equal(t, cmd.Process.Pid, r.PID)
			}
			check(lastRun(t, dir, "pipe"))
			closeIt := tc.reopen(dir)
			runs, err := checkpoint.ReadRuns(dir, "pipe")
			require.NoError(t, err)
			require.Len(t, runs, 2)
			check(runs[0])
			require.NoError(t, closeIt())
			runs, err = checkpoint.ReadRuns(dir, "pipe")
			require.NoError(t, err)
			check(runs[0])
			assert.Equal(t, checkpoint.RunFinished, runs[1].Status)
			assert.Zero(t, runs[1].Completed+runs[1].Failed)
		})
	}
}

// TestHistorySurvivesFresh: WithFresh starts the data from zero but keeps
// the run history and the metrics: a fresh run is still one of the job's
// runs. (checkpoint reset and Reset move the history away with the rest.)
func TestHistorySurvivesFresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(dir string, opts ...checkpoint.Option) (close func() error)
	}{
		{"runner", func(dir string, opts ...checkpoint.Option) func() error {
			r, err := checkpoint.Open[int, int]("job", append(opts, checkpoint.WithDir(dir), quiet)...)
			require.NoError(t, err)
			require.NoError(t, r.SaveResult(1, 1))
			require.NoError(t, r.LogMetrics(map[string]float64{"acc": 0.5}))
			return r.Close
		}},
		{"flow", func(dir string, opts ...checkpoint.Option) func() error {
			f, err := checkpoint.NewFlow[int]("job", append(opts, checkpoint.WithDir(dir), quiet)...)
			require.NoError(t, err)
			return f.Close
		}},
		{"pipeline", func(dir string, opts ...checkpoint.Option) func() error {
			p, err := checkpoint.OpenPipeline[int]("job", append(opts, checkpoint.WithDir(dir), quiet)...)
			require.NoError(t, err)
			return p.Close
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, tc.open(dir)())
			require.NoError(t, tc.open(dir, checkpoint.WithFresh())())
			runs, err := checkpoint.ReadRuns(dir, "job")
			require.NoError(t, err)
			require.Len(t, runs, 2, "the run before WithFresh is still there")
			assert.Equal(t, checkpoint.RunFinished, runs[0].Status)
			if tc.name == "runner" {
				assert.Equal(t, 1, runs[0].Completed)
				assert.Equal(t, map[string]float64{"acc": 0.5}, runs[0].Metrics)
			}
		})
	}
}
