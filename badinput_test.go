package checkpoint_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

func TestOpenRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "a/b", `a\b`, "../x", "..", ".", "x/../y", "a\x00b", "/abs"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			_, err := checkpoint.Open[int, int](name, checkpoint.WithDir(dir), quiet)
			require.Error(t, err)
			assert.NoDirExists(t, dir, "a rejected Open must not touch the disk")
		})
	}
}

func TestOpenRejectsBadKeyTypes(t *testing.T) {
	type unexported struct{ a int }
	type skipped struct {
		A int `json:"-"`
	}
	type nested struct{ In struct{ P *int } }
	tests := []struct {
		name string
		open func(dir string) error
	}{
		{"pointer", openErr[*int]},
		{"interface", openErr[any]},
		{"error interface", openErr[error]},
		{"channel", openErr[chan int]},
		{"complex", openErr[complex128]},
		{"unexported field", openErr[unexported]},
		{"field excluded from JSON", openErr[skipped]},
		{"nested pointer", openErr[nested]},
		{"negative max attempts", func(dir string) error {
			_, err := checkpoint.Open[int, int]("j", checkpoint.WithDir(dir), checkpoint.WithMaxAttempts(-1))
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			err := tc.open(dir)
			require.Error(t, err)
			assert.NoDirExists(t, dir)
		})
	}
}

func openErr[K comparable](dir string) error {
	_, err := checkpoint.Open[K, int]("j", checkpoint.WithDir(dir))
	return err
}

func TestSaveRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		save func(r *checkpoint.Runner[string, string]) error
	}{
		{"channel result", func(r *checkpoint.Runner[string, string]) error { return r.SaveResult("k", make(chan int)) }},
		{"func result", func(r *checkpoint.Runner[string, string]) error { return r.SaveResult("k", func() {}) }},
		{"NaN result", func(r *checkpoint.Runner[string, string]) error { return r.SaveResult("k", math.NaN()) }},
		{"infinite result", func(r *checkpoint.Runner[string, string]) error {
			return r.SaveResult("k", map[string]float64{"x": math.Inf(1)})
		}},
		{"invalid raw JSON", func(r *checkpoint.Runner[string, string]) error { return r.SaveResult("k", json.RawMessage(`{"a":`)) }},
		{"key not UTF-8", func(r *checkpoint.Runner[string, string]) error { return r.SaveResult("k\xff", 1) }},
		{"error for a key not UTF-8", func(r *checkpoint.Runner[string, string]) error {
			return r.SaveError("k\xff", errors.New("x"))
		}},
		{"nil error", func(r *checkpoint.Runner[string, string]) error { return r.SaveError("k", nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := open[string](t, dir)
			require.NoError(t, r.SaveResult("before", "kept"))
			require.NoError(t, r.SaveError("failed", errors.New("kept too")))
			results, errs := filepath.Join(dir, "job_results.jsonl"), filepath.Join(dir, "job_errors.jsonl")
			wantResults, wantErrs := scanFile(t, results), scanFile(t, errs)

			require.Error(t, tc.save(r))
			assert.False(t, r.IsCompleted("k"), "nothing is recorded for the key")
			assert.Equal(t, wantResults, scanFile(t, results), "the results file is unchanged")
			assert.Equal(t, wantErrs, scanFile(t, errs), "the errors file is unchanged")

			// Later records still land, and everything reopens.
			require.NoError(t, r.SaveResult("after", 1))
			require.NoError(t, r.Close())
			r = open[string](t, dir)
			assert.True(t, r.IsCompleted("before"))
			assert.True(t, r.IsCompleted("after"))
			assert.Len(t, r.AllErrors(), 1)
		})
	}
}

// TestAwkwardKeysAndValues round-trips keys and results that break naive
// line formats, through a restart.
func TestAwkwardKeysAndValues(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<19) // 8 MiB
	tests := []struct {
		name   string
		key    string
		result any
	}{
		{"newline in key", "a\nb", 1},
		{"tab and carriage return", "a\tb\rc", 2},
		{"quotes and backslashes", `say "hi" \ bye`, 3},
		{"non-ASCII", "日本語 café 🚀", "ünïcode"},
		{"control characters", "\x00\x01\x1f", 4},
		{"HTML characters", "<a href='x'>&</a>", "<b>"},
		{"empty key", "", 5},
		{"line separator", "a\u2028b", 6},
		{"looks like JSON", `{"key": 1}`, 7},
		{"big result", "big", big},
		{"newlines in result", "nl", "line1\nline2\n"},
		{"null result", "null", nil},
	}
	dir := t.TempDir()
	r := open[string](t, dir)
	for _, tc := range tests {
		require.NoError(t, r.SaveResult(tc.key, tc.result), tc.name)
	}
	require.NoError(t, r.SaveError("bad\nerror", errors.New("multi\nline \"error\" ✗")))
	require.NoError(t, r.Close())

	r = open[string](t, dir)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.True(t, r.IsCompleted(tc.key))
			var got any
			found, err := r.Result(tc.key, &got)
			require.NoError(t, err)
			require.True(t, found)
			want, _ := json.Marshal(tc.result)
			gotJSON, _ := json.Marshal(got)
			assert.JSONEq(t, string(want), string(gotJSON))
		})
	}
	failures := r.AllErrors()
	require.Len(t, failures, 1)
	assert.Equal(t, "bad\nerror", failures[0].Key)
	assert.Equal(t, "multi\nline \"error\" ✗", failures[0].Error)
	n := 0
	for range r.AllResults() {
		n++
	}
	assert.Equal(t, len(tests), n)
}

func TestKeyTypes(t *testing.T) {
	type pair struct {
		A string
		B int
	}
	type id int64
	t.Run("int8", func(t *testing.T) { roundTrip(t, []int8{-128, 0, 127}) })
	t.Run("uint64", func(t *testing.T) { roundTrip(t, []uint64{0, math.MaxUint64}) })
	t.Run("int64", func(t *testing.T) { roundTrip(t, []int64{math.MinInt64, -1, math.MaxInt64}) })
	t.Run("named int", func(t *testing.T) { roundTrip(t, []id{1, 2, 3}) })
	t.Run("float64", func(t *testing.T) { roundTrip(t, []float64{0.1, -2.5e300, 3}) })
	t.Run("float32", func(t *testing.T) { roundTrip(t, []float32{0.1, 1e30}) })
	t.Run("bool", func(t *testing.T) { roundTrip(t, []bool{true, false}) })
	t.Run("array", func(t *testing.T) { roundTrip(t, [][2]int{{1, 2}, {3, 4}}) })
	t.Run("struct", func(t *testing.T) { roundTrip(t, []pair{{"a", 1}, {"a\nb", 2}}) })
}

func roundTrip[K comparable](t *testing.T, keys []K) {
	dir := t.TempDir()
	r := open[K](t, dir)
	for i, k := range keys {
		require.NoError(t, r.SaveResult(k, i))
	}
	require.NoError(t, r.Close())
	r = open[K](t, dir)
	assert.Empty(t, collect(r, keys), "every key is recognised as completed after a restart")
	for i, k := range keys {
		var got int
		found, err := r.Result(k, &got)
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, i, got)
	}
}

func TestSaveRejectsNaNKey(t *testing.T) {
	r := open[float64](t, t.TempDir())
	assert.Error(t, r.SaveResult(math.NaN(), 1))
	assert.Error(t, r.SaveResult(math.Inf(-1), 1))
}

func TestOpenRejectsKeysOfTheWrongType(t *testing.T) {
	dir := t.TempDir()
	r := open[string](t, dir)
	require.NoError(t, r.SaveResult("not-a-number", 1))
	require.NoError(t, r.Close())

	_, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "job_results.jsonl")
	assert.Contains(t, err.Error(), "not-a-number")

	data, err := os.ReadFile(filepath.Join(dir, "job_results.jsonl"))
	require.NoError(t, err)
	assert.Contains(t, string(data), "not-a-number", "the refused file is left as it was")
}
