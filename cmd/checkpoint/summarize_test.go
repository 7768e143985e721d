package main

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarizeCommand(t *testing.T) {
	dir := t.TempDir()
	r, err := checkpoint.Open[int, map[string]any]("eval", checkpoint.WithDir(dir),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	// Tokens 10, 20, ..., 100 for keys 1..10; key 11 has no usage; key 3
	// is saved twice, and only its latest result counts.
	for k := 1; k <= 10; k++ {
		require.NoError(t, r.SaveResult(k, map[string]any{"usage": map[string]any{"total_tokens": 10 * k}, "score": float64(k) / 10}))
	}
	require.NoError(t, r.SaveResult(11, map[string]any{"score": "n/a"}))
	require.NoError(t, r.SaveResult(3, map[string]any{"usage": map[string]any{"total_tokens": 30}, "score": 0.3}))
	require.NoError(t, r.Close())

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"dotted path", []string{"summarize", "eval", "usage.total_tokens", "--dir", dir}, []string{
			"eval: usage.total_tokens in 11 results (1 without a number there)\n",
			"  count    10\n  mean     55\n  min      10\n  p50      55\n  p90      91\n  p99    99.1\n  max     100\n",
		}},
		{"jq path, DIR/NAME", []string{"summarize", filepath.Join(dir, "eval"), ".score"}, []string{
			"eval: .score in 11 results (1 without a number there)\n",
			"  count     10\n  mean    0.55\n  min      0.1\n", "  max        1\n",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.args...)
			require.Equal(t, 0, code, errOut)
			for _, want := range tc.want {
				assert.Contains(t, out, want)
			}
		})
	}

	code, out, errOut := runCmd(t, "summarize", "eval", ".usage.total_tokens", "--dir", dir, "--json")
	require.Equal(t, 0, code, errOut)
	var s checkpoint.FieldStats
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	assert.Equal(t, checkpoint.FieldStats{Field: ".usage.total_tokens", Count: 10, Missing: 1,
		Mean: 55, Min: 10, Max: 100, P50: 55, P90: 91, P99: 99.1}, s)
	assert.Equal(t, 1, strings.Count(out, "\n"), "one JSON object")
}

func TestSummarizeCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	writeEval(t, dir, "eval", 3, nil, nil, nil, 1)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no field", []string{"summarize", "eval"}, 2, "accepts 2 arg"},
		{"empty part", []string{"summarize", "eval", "a..b"}, 2, "empty part"},
		{"no such checkpoint", []string{"summarize", "nope", "score"}, 1, "checkpoint ls"},
		{"unknown flag", []string{"summarize", "eval", "score", "--percentile", "95"}, 2, "unknown flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, append(tc.args, "--dir", dir)...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.stderr)
		})
	}
	// A field that no result has is no error: every result is missing it.
	code, out, errOut := runCmd(t, "summarize", "eval", "latency", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "eval: latency in 3 results (3 without a number there)\n  no numbers\n", out)
}
