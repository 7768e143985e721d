package checkpoint_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

func TestRunsFinished(t *testing.T) {
	dir := t.TempDir()
	params := map[string]any{"model": "a", "temperature": 0.2}
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet, checkpoint.WithParams(params))
	require.NoError(t, err)
	for k := range 3 {
		require.NoError(t, r.SaveResult(k, k))
	}
	require.NoError(t, r.SaveError(9, errors.New("boom")))
	require.NoError(t, r.SaveResult(1, 11)) // saved again: two lines, both count
	require.NoError(t, r.LogMetrics(map[string]float64{"accuracy": 0.5}))
	require.NoError(t, r.LogMetrics(map[string]float64{"accuracy": 0.75, "f1": 0.6}))

	runs, err := checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, checkpoint.RunRunning, runs[0].Status, "open: running")
	assert.Equal(t, 4, runs[0].Completed, "counted from the journals while running")
	require.NoError(t, r.Close())

	runs, err = checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	run := runs[0]
	assert.Equal(t, checkpoint.RunFinished, run.Status)
	assert.Equal(t, 4, run.Completed)
	assert.Equal(t, 1, run.Failed)
	assert.JSONEq(t, `{"model":"a","temperature":0.2}`, string(run.Params))
	assert.Equal(t, map[string]float64{"accuracy": 0.75, "f1": 0.6}, run.Metrics)
	assert.Equal(t, runtime.Version(), run.GoVersion)
	assert.Equal(t, os.Getpid(), run.PID)
	host, _ := os.Hostname()
	assert.Equal(t, host, run.Host)
	assert.False(t, run.End.Before(run.Start))
	assert.Positive(t, run.Rate)

	// A second run: no params, nothing saved.
	time.Sleep(2 * time.Millisecond)
	r = open[int](t, dir)
	require.NoError(t, r.Close())
	runs, err = checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 2)
	assert.Less(t, runs[0].ID, runs[1].ID, "ids sort by start time")
	assert.Equal(t, checkpoint.RunFinished, runs[1].Status)
	assert.Zero(t, runs[1].Completed)
	assert.Nil(t, runs[1].Params)
	assert.Nil(t, runs[1].Metrics)

	// The meta file keeps exactly the Python library's seven fields.
	var meta map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "job_meta.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &meta))
	assert.Len(t, meta, 7)
}

func TestRunsNone(t *testing.T) {
	runs, err := checkpoint.ReadRuns(t.TempDir(), "nothing")
	require.NoError(t, err)
	assert.Empty(t, runs)
	_, err = checkpoint.ReadRuns(t.TempDir(), "../x")
	assert.Error(t, err)
}

// TestRunsClearedDuringRun: Clear empties the journals under the run, whose
// count then comes from the lines stamped since it started.
func TestRunsClearedDuringRun(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	for k := range 10 {
		require.NoError(t, r.SaveResult(k, k))
	}
	require.NoError(t, r.Close())
	r = open[int](t, dir)
	require.NoError(t, r.SaveResult(100, 1))
	require.NoError(t, r.Clear())
	for k := range 3 {
		require.NoError(t, r.SaveResult(k, k))
	}
	require.NoError(t, r.Close())
	runs, err := checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 2)
	assert.Equal(t, 10, runs[0].Completed)
	assert.Equal(t, 3, runs[1].Completed, "lines left after the Clear")
}

func TestParamsNotJSON(t *testing.T) {
	for name, p := range map[string]any{
		"func":        func() {},
		"channel":     make(chan int),
		"NaN":         map[string]float64{"lr": math.NaN()},
		"bad raw":     json.RawMessage(`{"a":`),
		"cyclic-free": map[string]any{"f": func() {}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet, checkpoint.WithParams(p))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "params are not JSON")
			// Refused before any run was recorded, and the lock is free.
			runs, err := checkpoint.ReadRuns(dir, "job")
			require.NoError(t, err)
			assert.Empty(t, runs)
			open[int](t, dir)
		})
	}
	// Any JSON value is fine, a struct included.
	type config struct {
		Model string `json:"model"`
		Seed  int    `json:"seed"`
	}
	dir := t.TempDir()
	r := open[int](t, dir, checkpoint.WithParams(config{"b", 7}))
	require.NoError(t, r.Close())
	runs, err := checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.JSONEq(t, `{"model":"b","seed":7}`, string(runs[0].Params))
}

// TestRunsCrashedSIGKILL kills a real process that holds a checkpoint and
// checks that its run shows as crashed, with the counts it reached, both
// to a reader before the next Open and in the file after it.
func TestRunsCrashedSIGKILL(t *testing.T) {
	bin := buildRunProg(t)
	dir := t.TempDir()

	// A finished run first, so the crashed one's counts start past it.
	r := open[int](t, dir)
	for k := range 5 {
		require.NoError(t, r.SaveResult(k, k))
	}
	require.NoError(t, r.Close())

	cmd := startRunProg(t, bin, dir, "job", "40", "3") // runs_flow_test.go

	runs, err := checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 2)
	assert.Equal(t, checkpoint.RunRunning, runs[1].Status, "its process is alive")

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	check := func(run checkpoint.Run) {
		t.Helper()
		assert.Equal(t, checkpoint.RunCrashed, run.Status)
		assert.Equal(t, 40, run.Completed)
		assert.Equal(t, 3, run.Failed)
		assert.Equal(t, cmd.Process.Pid, run.PID)
		assert.JSONEq(t, `{"model":"crashy","results":40}`, string(run.Params))
		assert.Equal(t, map[string]float64{"saved": 40}, run.Metrics)
		assert.False(t, run.End.Before(run.Start))
		assert.Positive(t, run.Rate)
	}
	runs, err = checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 2)
	check(runs[1])
	assert.Equal(t, 5, runs[0].Completed)

	// The next Open records the end, timed by the journals' last line.
	r = open[int](t, dir)
	runs, err = checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 3)
	check(runs[1])
	assert.Equal(t, checkpoint.RunRunning, runs[2].Status)
	lastErr := r.AllErrors()
	require.Len(t, lastErr, 3)
	assert.Equal(t, lastErr[2].Time.UnixMicro(), runs[1].End.UnixMicro(), "ends at its last saved line")
	b, err := os.ReadFile(filepath.Join(dir, "job_runs.jsonl"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"status":"crashed"`)
	require.NoError(t, r.Close())

	runs, err = checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 3)
	check(runs[1])
	assert.Equal(t, checkpoint.RunFinished, runs[2].Status)
}

func buildRunProg(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "runprog")
	out, err := exec.Command(goTool, "build", "-buildvcs=false", "-o", bin, "./internal/runprog").CombinedOutput()
	require.NoError(t, err, "build runprog: %s", out)
	return bin
}

// TestRunsTornLines: a crash while a line of the runs or metrics file was
// written leaves it torn; the next lines still stand alone.
func TestRunsTornLines(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	require.NoError(t, r.LogMetrics(map[string]float64{"x": 1}))
	require.NoError(t, r.Close())
	for _, f := range []string{"job_runs.jsonl", "job_metrics.jsonl"} {
		fh, err := os.OpenFile(filepath.Join(dir, f), os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		_, err = fh.WriteString(`{"event":"start","run":"zz`)
		require.NoError(t, err)
		require.NoError(t, fh.Close())
	}
	r = open[int](t, dir)
	require.NoError(t, r.LogMetrics(map[string]float64{"x": 2}))
	require.NoError(t, r.Close())
	runs, err := checkpoint.ReadRuns(dir, "job")
	require.NoError(t, err)
	require.Len(t, runs, 2)
	assert.Equal(t, checkpoint.RunFinished, runs[1].Status)
	assert.Equal(t, map[string]float64{"x": 2}, runs[1].Metrics)
	m, err := checkpoint.ReadMetrics(dir, "job")
	require.NoError(t, err)
	assert.Len(t, m["x"], 2)
}

// TestMetricsConcurrent logs from 16 goroutines and reads every value back.
func TestMetricsConcurrent(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	const goroutines, each = 16, 250
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				err := r.LogMetrics(map[string]float64{
					"g":                   float64(g),
					"i":                   float64(i),
					fmt.Sprint("only", g): 1,
				}, checkpoint.AtStep(int64(g*each+i)))
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	series, err := r.Metrics()
	require.NoError(t, err)
	require.Len(t, series["g"], goroutines*each)
	require.Len(t, series["i"], goroutines*each)
	var steps []int64
	for k, p := range series["g"] {
		require.NotNil(t, p.Step)
		steps = append(steps, *p.Step)
		// Both values of a call are on one line: same step, same time.
		q := series["i"][k]
		assert.Equal(t, *p.Step, *q.Step)
		assert.Equal(t, int64(p.Value)*each+int64(q.Value), *p.Step)
	}
	slices.Sort(steps)
	for i, s := range steps {
		require.Equal(t, int64(i), s, "every step exactly once")
	}
	for g := range goroutines {
		assert.Len(t, series[fmt.Sprint("only", g)], each)
	}
	// Every line is whole JSON.
	b, err := os.ReadFile(filepath.Join(dir, "job_metrics.jsonl"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, lines, goroutines*each)
	for _, l := range lines {
		require.True(t, json.Valid([]byte(l)), l)
	}
}

func TestLogMetricsRejects(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	assert.ErrorContains(t, r.LogMetrics(map[string]float64{"loss": math.NaN()}), "NaN")
	assert.ErrorContains(t, r.LogMetrics(map[string]float64{"loss": math.Inf(1)}), "JSON")
	assert.Error(t, r.LogMetrics(nil))
	require.NoError(t, r.LogMetrics(map[string]float64{`odd "name"`: 1e-300}, checkpoint.AtStep(-2)))
	series, err := r.Metrics()
	require.NoError(t, err)
	require.Len(t, series, 1, "nothing written for the rejected calls")
	p := series[`odd "name"`][0]
	assert.Equal(t, 1e-300, p.Value)
	assert.Equal(t, int64(-2), *p.Step)
	assert.WithinDuration(t, time.Now(), p.Time, time.Minute)
	require.NoError(t, r.Close())
	assert.ErrorIs(t, r.LogMetrics(map[string]float64{"x": 1}), checkpoint.ErrClosed)
	_, err = r.Metrics()
	assert.ErrorIs(t, err, checkpoint.ErrClosed)
}
