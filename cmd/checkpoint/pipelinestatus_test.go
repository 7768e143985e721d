package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/require"
)

// makePipeline saves, in a pipeline "docs" of dir, 3 results of step
// "fetch" (one of them after an error) and 1 result and 2 errors of step
// "label", and returns it open with both steps open: the caller closes it.
func makePipeline(t *testing.T, dir string) *checkpoint.Pipeline[int] {
	t.Helper()
	p, err := checkpoint.OpenPipeline[int]("docs", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	fetch, err := checkpoint.PipelineStep[int, string](p, "fetch")
	require.NoError(t, err)
	require.NoError(t, fetch.SaveError(3, errors.New("timeout")))
	for i := 1; i <= 3; i++ {
		require.NoError(t, fetch.SaveResult(i, "page"))
	}
	label, err := checkpoint.PipelineStep[int, string](p, "label")
	require.NoError(t, err)
	require.NoError(t, label.SaveResult(1, "cat"))
	require.NoError(t, label.SaveError(2, errors.New("refused")))
	require.NoError(t, label.SaveError(3, errors.New("refused")))
	return p
}

func TestStatusOfPipeline(t *testing.T) {
	dir := t.TempDir()
	p := makePipeline(t, dir)

	want := map[string][2]int{"fetch": {3, 0}, "label": {1, 2}}
	check := func(running bool) {
		t.Helper()
		code, out, errOut := runCmd(t, "status", "docs", "--dir", dir, "--json")
		require.Equal(t, 0, code, errOut)
		var got struct {
			Kind    string
			Running bool
			Steps   []struct {
				Step, Checkpoint  string
				Completed, Failed int
				Pending           bool
				LastUpdated       string `json:"last_updated"`
			}
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got), out)
		require.Equal(t, "pipeline", got.Kind)
		require.Equal(t, running, got.Running, "running")
		require.Len(t, got.Steps, 2)
		for i, name := range []string{"fetch", "label"} {
			s := got.Steps[i]
			require.Equal(t, name, s.Step, "steps in the order first opened")
			require.Equal(t, "docs."+name, s.Checkpoint)
			require.Equal(t, want[name], [2]int{s.Completed, s.Failed}, "step %s: completed, failed", name)
			require.False(t, s.Pending)
			require.NotEmpty(t, s.LastUpdated)
		}

		code, out, errOut = runCmd(t, "status", "docs", "--dir", dir)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "pipeline docs")
		require.Regexp(t, `fetch\s+3\s+0\s`, out)
		require.Regexp(t, `label\s+1\s+2\s`, out)
	}
	check(true) // the pipeline holds its lock
	code, _, errOut := runCmd(t, "retry", "docs.label", "--all", "--dir", dir)
	require.Equal(t, 1, code, "retry of a step while its pipeline runs")
	require.Contains(t, errOut, `pipeline "docs"`)
	require.NoError(t, p.Close())
	check(false)

	// A step listed but without files yet shows as not started.
	for _, f := range []string{"docs.label_results.jsonl", "docs.label_errors.jsonl", "docs.label_meta.json"} {
		require.NoError(t, os.Remove(filepath.Join(dir, f)))
	}
	code, out, errOut := runCmd(t, "status", "docs", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `label\s+-\s+-\s+-\s+-\s+not started`, out)

	// A step is a checkpoint of its own for every other command.
	code, out, errOut = runCmd(t, "status", "docs.fetch", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "completed    3")
}

// ls has a row for a pipeline, with its steps' counts added up, as well as
// one for each step; the pipeline runs while it is open (on Linux, where
// ls can see locks).
func TestLsPipeline(t *testing.T) {
	dir := t.TempDir()
	p := makePipeline(t, dir)
	check := func(running bool) {
		t.Helper()
		rows := lsRows(t, dir)
		got, ok := rows["docs"]
		require.True(t, ok, "no row for the pipeline: %v", rows)
		require.Equal(t, "pipeline", got.Kind)
		require.Equal(t, [2]int{4, 2}, [2]int{got.Completed, got.Failed}, "completed, failed: fetch 3+0, label 1+2")
		require.Equal(t, rows["docs.fetch"].Size+rows["docs.label"].Size, got.Size-fileSize(t, filepath.Join(dir, "docs_pipeline.json")))
		require.Equal(t, [2]int{1, 2}, [2]int{rows["docs.label"].Completed, rows["docs.label"].Failed}, "the step keeps its own row")
		if runtime.GOOS == "linux" {
			require.Equal(t, running, got.Running, "running")
		}
	}
	check(true)
	require.NoError(t, p.Close())
	check(false)

	code, out, errOut := runCmd(t, "ls", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^docs\s+pipeline\s+4\s+2\s`, out)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

// A pipeline or a flow named where a checkpoint is wanted gets an error that
// says what the name is and where its keys are, and nothing changes.
func TestKeyCommandsOnPipelineOrFlow(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, makePipeline(t, dir).Close())
	makeFlow(t, dir)
	before := snapshot(t, dir)
	for _, tc := range []struct {
		name, want string
	}{
		{"docs", `"docs" in ` + dir + ` is a pipeline, not a checkpoint: each of its steps is one (docs.fetch, docs.label)`},
		{"train", `"train" in ` + dir + ` is a flow: it has steps, not keys`},
		{"nosuch", `no checkpoint "nosuch"`},
	} {
		for _, args := range [][]string{{"errors"}, {"results"}, {"watch"}, {"retry", "--all"}, {"compact"}, {"forget", "1"}} {
			args := append(args[:1:1], append([]string{tc.name}, args[1:]...)...)
			code, _, errOut := runCmd(t, append(args, "--dir", dir)...)
			require.Equal(t, 1, code, "%v", args)
			require.Contains(t, errOut, tc.want, "%v", args)
		}
	}
	require.Equal(t, before, snapshot(t, dir), "nothing changed")
}
