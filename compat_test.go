package checkpoint_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

type label struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

// copySample copies the Python-written sample checkpoint in checkpoints/
// into a temporary folder, as checkpoint "sample".
func copySample(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"sample_results.jsonl", "sample_errors.jsonl", "sample_meta.json"} {
		b, err := os.ReadFile(filepath.Join("checkpoints", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	return dir
}

func openSample[K comparable](t *testing.T, dir string) *checkpoint.Runner[K, K] {
	t.Helper()
	r, err := checkpoint.Open[K, K]("sample", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

// TestPythonSample opens files written by the Python library: keys written
// as strings, naive local timestamps, json.dumps separators and \u escapes,
// and an error for key 3 that the Python library kept after key 3 succeeded.
func TestPythonSample(t *testing.T) {
	t.Run("int keys", func(t *testing.T) {
		r := openSample[int](t, copySample(t))
		assert.Equal(t, []int{5, 6}, collect(r, []int{1, 2, 3, 4, 5, 6}))

		var got label
		found, err := r.Result(2, &got)
		require.NoError(t, err)
		require.True(t, found)
		assert.Equal(t, label{"café", 0.2}, got)

		failures := r.AllErrors()
		require.Len(t, failures, 1, "key 3 succeeded after its error")
		assert.Equal(t, 5, failures[0].Key)
		assert.Equal(t, "timeout after 30s", failures[0].Error)
		assert.Equal(t, 2, failures[0].Attempts)
		want := time.Date(2026, 1, 7, 12, 35, 3, 123575000, time.Local)
		assert.True(t, want.Equal(failures[0].Time), "naive timestamps are local time: got %v", failures[0].Time)

		done, total := r.Progress()
		assert.Equal(t, 4, done)
		assert.Equal(t, 6, total, "the total comes from the Python meta file")
		assert.Equal(t, 2026, r.Meta().StartedAt.Year(), "started_at is kept")
	})
	t.Run("string keys", func(t *testing.T) {
		r := openSample[string](t, copySample(t))
		assert.Equal(t, []string{"5", "6"}, collect(r, []string{"1", "2", "3", "4", "5", "6"}))
	})
	t.Run("resume appends records Python can read", func(t *testing.T) {
		dir := copySample(t)
		r := openSample[int](t, dir)
		require.NoError(t, r.SaveResult(5, label{"late", 1}))
		require.NoError(t, r.SaveError(6, errors.New("nope")))
		require.NoError(t, r.Close())

		r = openSample[int](t, dir)
		assert.Equal(t, []int{6}, collect(r, []int{1, 2, 3, 4, 5, 6}))
		results := readLines(t, filepath.Join(dir, "sample_results.jsonl"))
		assert.Len(t, results, 5)
		assert.EqualValues(t, 5, results[4]["key"])
	})
}

// TestPythonDamage opens Python-format checkpoints in the states a kill -9
// leaves the Python library in, which it cannot itself restart from.
func TestPythonDamage(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		wantDone []int
	}{
		{"empty meta file", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "sample_meta.json"), nil, 0o644))
		}, []int{1, 2, 3, 4}},
		{"missing meta file", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "sample_meta.json")))
		}, []int{1, 2, 3, 4}},
		{"garbage meta file", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "sample_meta.json"), []byte("{\"experiment_na"), 0o644))
		}, []int{1, 2, 3, 4}},
		{"torn last result", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "sample_results.jsonl"), `{"key": "6", "result": {"label": "o`)
		}, []int{1, 2, 3, 4}},
		{"torn last error", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "sample_errors.jsonl"), `{"key": "6", "err`)
		}, []int{1, 2, 3, 4}},
		{"whole last record without its newline", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "sample_results.jsonl"), `{"key": "6", "result": 6, "timestamp": "2026-01-07T12:36:00"}`)
		}, []int{1, 2, 3, 4, 6}},
		{"CRLF line ends", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "sample_results.jsonl"), "{\"key\": \"6\", \"result\": 6, \"timestamp\": \"2026-01-07T12:36:00\"}\r\n")
		}, []int{1, 2, 3, 4, 6}},
		{"blank lines", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "sample_results.jsonl"), "\n\n{\"key\": \"6\", \"result\": 6, \"timestamp\": \"2026-01-07T12:36:00\"}\n\n")
		}, []int{1, 2, 3, 4, 6}},
		{"fields in another order", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "sample_results.jsonl"), `{"timestamp": "2026-01-07T12:36:00", "result": 6, "key": "6"}`+"\n")
		}, []int{1, 2, 3, 4, 6}},
		{"no errors file", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "sample_errors.jsonl")))
		}, []int{1, 2, 3, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copySample(t)
			tc.damage(t, dir)
			r := openSample[int](t, dir)
			var done []int
			for _, k := range []int{1, 2, 3, 4, 5, 6} {
				if r.IsCompleted(k) {
					done = append(done, k)
				}
			}
			assert.Equal(t, tc.wantDone, done)
			require.NoError(t, r.SaveResult(7, 7))
			require.NoError(t, r.Close())

			// Every file now parses line by line, the meta included, and a
			// second Open changes nothing.
			readLines(t, filepath.Join(dir, "sample_results.jsonl"))
			readLines(t, filepath.Join(dir, "sample_errors.jsonl"))
			var meta map[string]any
			b, err := os.ReadFile(filepath.Join(dir, "sample_meta.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &meta))
			assert.EqualValues(t, len(tc.wantDone)+1, meta["completed_items"])
			before := scanFile(t, filepath.Join(dir, "sample_results.jsonl"))
			r = openSample[int](t, dir)
			assert.True(t, r.IsCompleted(7))
			assert.Equal(t, before, scanFile(t, filepath.Join(dir, "sample_results.jsonl")))
		})
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// pythonLoader mirrors how the Python library loads a checkpoint: every
// line through json.loads, str keys, and the meta through a dataclass that
// refuses unknown fields.
const pythonLoader = `
import json, sys
from dataclasses import dataclass

@dataclass
class Metadata:
    experiment_name: str
    started_at: str
    last_updated: str
    total_items: int = 0
    completed_items: int = 0
    failed_items: int = 0
    schema_version: str = "0.0.0"

d, name = sys.argv[1], sys.argv[2]
meta = Metadata(**json.load(open(f"{d}/{name}_meta.json")))
results = {}
for line in open(f"{d}/{name}_results.jsonl"):
    if line.strip():
        rec = json.loads(line)
        results[str(rec["key"])] = rec["result"]
errors = [json.loads(l) for l in open(f"{d}/{name}_errors.jsonl") if l.strip()]
from datetime import datetime
for rec in errors + [json.loads(l) for l in open(f"{d}/{name}_results.jsonl") if l.strip()]:
    datetime.fromisoformat(rec["timestamp"])
datetime.fromisoformat(meta.started_at)
print(json.dumps({"completed": sorted(results), "errors": len(errors), "meta_completed": meta.completed_items}))
`

// TestPythonReadsOurFiles runs the Python loader on files written here with
// string keys. It needs python3, which CI machines have; without it the test
// is skipped.
func TestPythonReadsOurFiles(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	r, err := checkpoint.Open[string, string]("exp", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, r.SaveResult("a", label{"x", 1}))
	require.NoError(t, r.SaveResult("b\n\"é\"", []int{1, 2}))
	require.NoError(t, r.SaveError("c", errors.New("bad")))
	require.NoError(t, r.Close())

	out, err := exec.Command(py, "-c", pythonLoader, dir, "exp").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var got struct {
		Completed     []string
		Errors        int
		MetaCompleted int `json:"meta_completed"`
	}
	require.NoError(t, json.Unmarshal(out, &got), "%s", out)
	assert.Equal(t, []string{"a", "b\n\"é\""}, got.Completed)
	assert.Equal(t, 1, got.Errors)
	assert.Equal(t, 2, got.MetaCompleted)
}
