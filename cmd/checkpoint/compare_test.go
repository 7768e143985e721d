package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeEval writes checkpoint name in dir: keys 1..n with a label, where
// the keys in wrong get "dog" instead of "cat" and the keys in failed fail.
func writeEval(t *testing.T, dir, name string, n int, wrong, failed map[int]bool, params map[string]any, acc float64) {
	t.Helper()
	r, err := checkpoint.Open[int, int](name, checkpoint.WithDir(dir), checkpoint.WithParams(params),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	for k := 1; k <= n; k++ {
		switch {
		case failed[k]:
			require.NoError(t, r.SaveError(k, errors.New("timeout after 30s")))
		case wrong[k]:
			require.NoError(t, r.SaveResult(k, map[string]any{"label": "dog", "score": 0.5}))
		default:
			require.NoError(t, r.SaveResult(k, map[string]any{"label": "cat", "score": 0.5}))
		}
	}
	require.NoError(t, r.LogMetrics(map[string]float64{"accuracy": acc}))
	require.NoError(t, r.Close())
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	writeEval(t, dir, "model-a", 10, nil, map[int]bool{9: true}, map[string]any{"model": "a"}, 0.9)
	writeEval(t, dir, "model-b", 11, map[int]bool{3: true, 4: true}, map[int]bool{5: true}, map[string]any{"model": "b"}, 0.8)

	code, out, errOut := runCmd(t, "compare", "model-a", "model-b", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		`only in B +1   1 completed, 0 failed; e.g. 11\n`,
		`completed in A, failed in B +1\n +key 5: "timeout after 30s"\n`,
		`failed in A, completed in B +1\n +key 9: "timeout after 30s"\n`,
		`failed in both +0\n`,
		`different +2\n +label +2\n +key 3: label "cat" → "dog"\n`,
		`model +"a" +"b" +differs\n`,
		`accuracy +0.9 +0.8 +-0.1\n`,
	} {
		assert.Regexp(t, want, out)
	}

	// Differences do not change the status unless asked.
	code, _, errOut = runCmd(t, "compare", "model-a", "model-b", "--dir", dir, "--fail-on-diff")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "differ")
	code, _, _ = runCmd(t, "compare", "model-a", filepath.Join(dir, "model-a"), "--dir", dir, "--fail-on-diff")
	assert.Equal(t, 0, code, "DIR/NAME, and a checkpoint equals itself")

	code, out, _ = runCmd(t, "compare", filepath.Join(dir, "model-a_results.jsonl"), "model-b", "--dir", dir, "--json", "--examples", "1")
	require.Equal(t, 0, code)
	var c checkpoint.Comparison
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	assert.Equal(t, 2, c.Different)
	assert.Equal(t, "model-a", c.A.Name)
	require.Len(t, c.Fields, 1)
	assert.Len(t, c.Fields[0].Examples, 1)
	assert.Equal(t, 1, strings.Count(out, "\n"), "one JSON object")
}

func TestCompareCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	writeEval(t, dir, "a", 3, nil, nil, nil, 1)
	r, err := checkpoint.Open[string, int]("words", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	require.NoError(t, r.SaveResult("abc", 1))
	require.NoError(t, r.Close())
	before := snapshot(t, dir)

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"compare", "a"}, 2, "accepts 2 arg"},
		{[]string{"compare", "a", "a", "--tolerance", "-1"}, 2, "--tolerance"},
		{[]string{"compare", "a", "a", "--tolerance", "x"}, 2, "invalid argument"},
		{[]string{"compare", "a", "missing"}, 1, `"missing"`},
		{[]string{"compare", "a", "words"}, 1, "key types differ"},
		{[]string{"compare", "a", filepath.Join(dir, "sub", "a")}, 1, "no such checkpoint"},
	} {
		code, _, errOut := runCmd(t, append(tc.args, "--dir", dir)...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.msg, tc.args)
	}
	assert.Equal(t, before, snapshot(t, dir), "nothing changed")
}

func TestCompareCommandPythonSample(t *testing.T) {
	dir := sampleDir(t)
	writeEval(t, dir, "go", 5, nil, nil, nil, 1)
	code, out, errOut := runCmd(t, "compare", "sample", "go", "--dir", dir, "--json")
	require.Equal(t, 0, code, errOut)
	var c checkpoint.Comparison
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	assert.Equal(t, 5, c.Both)
	assert.Equal(t, 1, c.FailedOnlyInA.Count, "key 5")
	assert.Equal(t, 4, c.Different, "labels and scores differ")
}

func TestRunsCommand(t *testing.T) {
	dir := t.TempDir()
	writeEval(t, dir, "eval", 4, nil, map[int]bool{2: true}, map[string]any{"model": "a", "temperature": 0.2}, 0.75)
	writeEval(t, dir, "eval", 4, nil, nil, map[string]any{"model": "b"}, 0.8)

	code, out, errOut := runCmd(t, "runs", "eval", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], "RUN")
	assert.Contains(t, lines[1], `model="b"`, "newest first")
	assert.Contains(t, lines[1], "accuracy=0.8")
	assert.Contains(t, lines[2], `model="a" temperature=0.2`)
	assert.Contains(t, lines[2], "finished")
	assert.Regexp(t, `finished\s+\S+ \S+\s+\S+\s+3\s+1\s`, lines[2])

	code, out, _ = runCmd(t, "runs", "eval", "--dir", dir, "--json", "--limit", "1")
	require.Equal(t, 0, code)
	var run checkpoint.Run
	require.NoError(t, json.Unmarshal([]byte(out), &run))
	assert.Equal(t, checkpoint.RunFinished, run.Status)
	assert.JSONEq(t, `{"model":"b"}`, string(run.Params))
	assert.Equal(t, 1, strings.Count(out, "\n"))

	// The Python sample has no history; an unknown name is an error.
	sdir := sampleDir(t)
	code, out, _ = runCmd(t, "runs", "sample", "--dir", sdir)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "no recorded runs")
	code, _, errOut = runCmd(t, "runs", "nope", "--dir", sdir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `"nope"`)
	code, _, _ = runCmd(t, "runs", "eval", "--dir", dir, "--limit", "-1")
	assert.Equal(t, 2, code)
}
