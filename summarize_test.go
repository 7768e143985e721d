package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarize(t *testing.T) {
	dir := t.TempDir()
	r, err := Open[int, any]("eval", WithDir(dir), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	for i := 1; i <= 100; i++ {
		require.NoError(t, r.SaveResult(i, map[string]any{"score": i, "usage": map[string]any{"tokens": []int{i, 2 * i}}}))
	}
	require.NoError(t, r.SaveResult(50, map[string]any{"score": 1000})) // re-saved: only the latest counts
	require.NoError(t, r.SaveResult(50, map[string]any{"score": 50, "usage": map[string]any{"tokens": []int{50, 100}}}))
	require.NoError(t, r.SaveResult(101, map[string]any{"score": "high"})) // not a number
	require.NoError(t, r.SaveResult(102, map[string]any{"score": nil}))
	require.NoError(t, r.SaveResult(103, "no object"))
	require.NoError(t, r.SaveResult(104, map[string]any{"score": 5}))
	require.NoError(t, r.SaveError(104, errors.New("failed since"))) // failed now: not a result
	require.NoError(t, r.Close())

	ref := Ref{Dir: dir, Name: "eval"}
	s, err := Summarize(context.Background(), ref, "score")
	require.NoError(t, err)
	assert.Equal(t, "score", s.Field)
	assert.Equal(t, 100, s.Count)
	assert.Equal(t, 3, s.Missing)
	assert.InDelta(t, 50.5, s.Mean, 1e-9)
	assert.Equal(t, 1.0, s.Min)
	assert.Equal(t, 100.0, s.Max)
	assert.InDelta(t, 50.5, s.P50, 1e-9) // numpy.percentile(range(1, 101), 50)
	assert.InDelta(t, 90.1, s.P90, 1e-9)
	assert.InDelta(t, 99.01, s.P99, 1e-9)

	s, err = Summarize(context.Background(), ref, "usage.tokens.1")
	require.NoError(t, err)
	assert.Equal(t, 100, s.Count)
	assert.Equal(t, 200.0, s.Max)
	assert.InDelta(t, 101, s.Mean, 1e-9)

	s, err = Summarize(context.Background(), ref, "nothing")
	require.NoError(t, err)
	assert.Zero(t, s.Count)
	assert.Equal(t, 103, s.Missing)

	_, err = Summarize(context.Background(), ref, "a..b")
	assert.Error(t, err)
	_, err = Summarize(context.Background(), Ref{Dir: dir, Name: "none"}, "score")
	assert.ErrorIs(t, err, ErrNoCheckpoint)
}

func TestSummarizePythonSample(t *testing.T) {
	s, err := Summarize(context.Background(), Ref{Dir: "checkpoints", Name: "sample"}, "score")
	require.NoError(t, err)
	assert.Equal(t, 4, s.Count, "keys 1 to 4; key 5 failed")
	assert.InDelta(t, 0.25, s.Mean, 1e-12)
	assert.InDelta(t, 0.25, s.P50, 1e-12)
	assert.Equal(t, 0.1, s.Min)
	assert.Equal(t, 0.4, s.Max)
}

func TestValueAt(t *testing.T) {
	for _, tc := range []struct {
		json, path string
		want       float64
		ok         bool
	}{
		{`{"a":1}`, "a", 1, true},
		{`{ "b" : [1, {"c": -2.5e3}], "a" : 3 }`, "b.1.c", -2500, true},
		{`{"b":[1,2]}`, "b.2", 0, false},
		{`{"x":"a,}\"]","a":7}`, "a", 7, true},
		{`{"caf\u00e9":4}`, "café", 4, true},
		{`{"a":{"a":true}}`, "a.a", 0, false},
		{`{"a":null}`, "a", 0, false},
		{`12`, "", 12, true},
		{`[5]`, "0", 5, true},
		{`{"a":1}`, "a.b", 0, false},
		{`{"a":{"b":2}}`, ".a.b", 2, true}, // jq's leading dot
		{`3.5`, ".", 3.5, true},
	} {
		path, err := parseFieldPath(tc.path)
		require.NoError(t, err)
		got, ok := numberAt([]byte(tc.json), path)
		assert.Equal(t, tc.ok, ok, "%s %s", tc.json, tc.path)
		assert.Equal(t, tc.want, got, "%s %s", tc.json, tc.path)
	}
}

func TestBadFieldPath(t *testing.T) {
	for _, field := range []string{"a..b", "a.", "..", ".a."} {
		_, err := parseFieldPath(field)
		assert.ErrorIs(t, err, ErrBadField, field)
	}
	_, err := Summarize(context.Background(), Ref{Dir: "checkpoints", Name: "sample"}, "score..x")
	assert.ErrorIs(t, err, ErrBadField)
}

// FuzzNumberAt holds the byte walker to what encoding/json finds at the
// same path.
func FuzzNumberAt(f *testing.F) {
	f.Add(`{"a":1,"b":{"c":[1,2.5]}}`, "b.c.1")
	f.Add(`{"a":"x","a":2}`, "a")
	f.Add(`[{"k":-0.0}]`, "0.k")
	f.Add(`{"a" : 1e400}`, "a")
	f.Fuzz(func(t *testing.T, doc, field string) {
		path, err := parseFieldPath(field)
		if err != nil || !json.Valid([]byte(doc)) {
			return
		}
		got, ok := numberAt([]byte(doc), path)
		d := json.NewDecoder(bytes.NewReader([]byte(doc)))
		d.UseNumber()
		var v any
		require.NoError(t, d.Decode(&v))
		want, wantOK := walkDecoded(v, path)
		if strings.Contains(doc, `\`) || hasDuplicateNames(doc) {
			return // escaped or repeated names: the walker takes the first match
		}
		require.Equal(t, wantOK, ok, "%s at %q", doc, field)
		if ok {
			assert.Equal(t, want, got)
		}
	})
}

func walkDecoded(v any, path []string) (float64, bool) {
	for _, seg := range path {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return 0, false
			}
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(x) {
				return 0, false
			}
			v = x[n]
		default:
			return 0, false
		}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, false
	}
	return f, err == nil
}

// hasDuplicateNames is a rough check for objects that repeat a name, where
// encoding/json keeps the last and the walker the first.
func hasDuplicateNames(doc string) bool {
	seen := map[string]int{}
	for _, part := range strings.Split(doc, `"`) {
		seen[part]++
	}
	for _, n := range seen {
		if n > 1 {
			return true
		}
	}
	return false
}

// TestRebaseRecord: scanAhead keeps a record parsed from the scanner's
// buffer as slices of its own copy of the line, whichever parser read it
// (the slow one returns memory of its own).
func TestRebaseRecord(t *testing.T) {
	for _, line := range []string{
		`{"key": 7, "result": {"a": 1}, "timestamp": "2026-01-02T03:04:05.000006+00:00"}`,
		`{"key":"x","result":[1,2],"timestamp":"2026-01-02T03:04:05.000006+00:00"}`,
		`{"result": 3, "key": "k", "timestamp": "2026-01-02T03:04:05.000006+00:00"}`,
		`{"key": 1, "result": {"key": 2}, "timestamp": "2026-01-02T03:04:05.000006+00:00"}`,
	} {
		buf := []byte(line)
		rec, ok := parseRecord(buf)
		require.True(t, ok, line)
		want := record{key: bytes.Clone(rec.key), body: bytes.Clone(rec.body), ts: bytes.Clone(rec.ts), whole: rec.whole}
		own := bytes.Clone(buf)
		got := rebaseRecord(rec, buf, own)
		for i := range buf {
			buf[i] = '#' // the scanner reuses its buffer
		}
		assert.Equal(t, want, got, line)
	}
}
