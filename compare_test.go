package checkpoint_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

// comparePair writes a hand-made pair with every category of Compare: A
// with integer keys, B with string keys (as Python writes them).
func comparePair(t *testing.T) (a, b checkpoint.Ref) {
	t.Helper()
	dirA, dirB := t.TempDir(), t.TempDir()
	ra, err := checkpoint.Open[int, any]("eval", checkpoint.WithDir(dirA), quiet,
		checkpoint.WithParams(map[string]any{"model": "a", "temperature": 0}))
	require.NoError(t, err)
	rb, err := checkpoint.Open[string, any]("eval", checkpoint.WithDir(dirB), quiet,
		checkpoint.WithParams(map[string]any{"model": "b", "temperature": 0.0, "seed": 7}))
	require.NoError(t, err)
	obj := func(s string) json.RawMessage { return json.RawMessage(s) }
	boom := func(s string) error { return errors.New(s) }
	saveA := func(k int, v any) { require.NoError(t, ra.SaveResult(k, v)) }
	failA := func(k int, msg string) { require.NoError(t, ra.SaveError(k, boom(msg))) }
	saveB := func(k int, v any) { require.NoError(t, rb.SaveResult(strconv.Itoa(k), v)) }
	failB := func(k int, msg string) { require.NoError(t, rb.SaveError(strconv.Itoa(k), boom(msg))) }

	saveA(1, obj(`{"label":"cat","score":0.5}`)) // equal
	saveB(1, obj(`{"label":"cat","score":0.5}`))
	saveA(2, obj(`{"label":"cat","score":0.5}`)) // equal within a tolerance, any field order
	saveB(2, obj(`{"score": 0.5000001, "label": "cat"}`))
	saveA(3, obj(`{"label":"cat","score":1}`)) // label differs
	saveB(3, obj(`{"label":"dog","score":1.0}`))
	saveA(4, obj(`{"label":"x","extra":true}`)) // field missing in B
	saveB(4, obj(`{"label":"x"}`))
	saveA(5, obj(`{"label":"x"}`)) // completed in A, failed in B
	failB(5, "timeout after 30s")
	failA(6, "boom") // failed in A, completed in B
	saveB(6, obj(`{"label":"y"}`))
	failA(7, "e1") // failed in both
	failB(7, "e2")
	saveA(8, obj(`{"label":"only a"}`)) // only in A
	failA(9, "only a")
	saveB(10, obj(`{"label":"only b"}`)) // only in B
	failA(11, "first")                   // failed, then completed: equal
	saveA(11, obj(`{"label":"z"}`))
	saveB(11, obj(`{"label":"z"}`))
	saveA(12, obj(`{"label":"z"}`)) // completed, then failed: failed in A
	failA(12, "late")
	saveB(12, obj(`{"label":"z"}`))
	saveA(13, obj(`{"label":"old"}`)) // the latest result counts
	saveA(13, obj(`{"label":"new"}`))
	saveB(13, obj(`{"label":"new"}`))
	saveA(14, obj(`{"m":{"f1":0.1,"p":1}}`)) // nested field
	saveB(14, obj(`{"m":{"f1":0.2,"p":1}}`))
	saveA(15, "yes") // not an object
	saveB(15, "no")
	failB(16, "b fails first") // B: failed, then completed, then failed again
	saveB(16, obj(`{}`))
	failB(16, "b fails last")
	saveA(16, obj(`{}`))

	require.NoError(t, ra.LogMetrics(map[string]float64{"accuracy": 0.7}))
	require.NoError(t, ra.LogMetrics(map[string]float64{"accuracy": 0.9}))
	require.NoError(t, rb.LogMetrics(map[string]float64{"accuracy": 0.8, "f1": 0.5}))
	require.NoError(t, ra.Close())
	require.NoError(t, rb.Close())
	return checkpoint.Ref{Dir: dirA, Name: "eval"}, checkpoint.Ref{Dir: dirB, Name: "eval"}
}

func TestCompareCategories(t *testing.T) {
	a, b := comparePair(t)
	c, err := checkpoint.Compare(context.Background(), a, b, checkpoint.WithExamples(5))
	require.NoError(t, err)

	assert.Equal(t, checkpoint.Side{Ref: a, Completed: 11, Failed: 4, Run: c.A.Run}, c.A)
	assert.Equal(t, checkpoint.Side{Ref: b, Completed: 11, Failed: 3, Run: c.B.Run}, c.B)
	assert.Equal(t, 13, c.Both)
	assert.Equal(t, checkpoint.KeySet{Count: 2, Completed: 1, Failed: 1, Examples: []string{"8", "9"}}, c.OnlyA)
	assert.Equal(t, checkpoint.KeySet{Count: 1, Completed: 1, Examples: []string{"10"}}, c.OnlyB)
	assert.Equal(t, 3, c.Equal, "1, 11, 13")
	assert.Equal(t, 5, c.Different, "2, 3, 4, 14, 15")
	assert.Equal(t, checkpoint.Outcomes{Count: 2, Examples: []checkpoint.OutcomeChange{
		{Key: "5", ErrorB: "timeout after 30s"}, {Key: "16", ErrorB: "b fails last"},
	}}, c.FailedOnlyInB)
	assert.ElementsMatch(t, []checkpoint.OutcomeChange{{Key: "6", ErrorA: "boom"}, {Key: "12", ErrorA: "late"}},
		c.FailedOnlyInA.Examples)
	assert.Equal(t, 2, c.FailedOnlyInA.Count)
	assert.Equal(t, checkpoint.Outcomes{Count: 1, Examples: []checkpoint.OutcomeChange{{Key: "7", ErrorA: "e1", ErrorB: "e2"}}},
		c.FailedInBoth)

	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	assert.Equal(t, []checkpoint.FieldDiff{
		{Field: "", Count: 1, Examples: []checkpoint.ValueChange{{Key: "15", A: raw(`"yes"`), B: raw(`"no"`)}}},
		{Field: "extra", Count: 1, Examples: []checkpoint.ValueChange{{Key: "4", A: raw(`true`)}}},
		{Field: "label", Count: 1, Examples: []checkpoint.ValueChange{{Key: "3", A: raw(`"cat"`), B: raw(`"dog"`)}}},
		{Field: "m.f1", Count: 1, Examples: []checkpoint.ValueChange{{Key: "14", A: raw(`0.1`), B: raw(`0.2`)}}},
		{Field: "score", Count: 1, Examples: []checkpoint.ValueChange{{Key: "2", A: raw(`0.5`), B: raw(`0.5000001`)}}},
	}, c.Fields)
	assert.True(t, c.Differs())

	require.Len(t, c.Params, 3)
	assert.Equal(t, checkpoint.ParamDiff{Name: "model", A: raw(`"a"`), B: raw(`"b"`), Differs: true}, c.Params[0])
	assert.Equal(t, checkpoint.ParamDiff{Name: "seed", B: raw(`7`), Differs: true}, c.Params[1])
	assert.Equal(t, checkpoint.ParamDiff{Name: "temperature", A: raw(`0`), B: raw(`0`), Differs: false}, c.Params[2])

	require.Len(t, c.Metrics, 2)
	assert.Equal(t, "accuracy", c.Metrics[0].Name)
	assert.Equal(t, 0.9, *c.Metrics[0].A)
	assert.Equal(t, 0.8, *c.Metrics[0].B)
	assert.InDelta(t, -0.1, *c.Metrics[0].Delta, 1e-12)
	assert.Equal(t, "f1", c.Metrics[1].Name)
	assert.Nil(t, c.Metrics[1].A)
	assert.Nil(t, c.Metrics[1].Delta)
	require.NotNil(t, c.A.Run)
	assert.Equal(t, checkpoint.RunFinished, c.A.Run.Status)

	// With a tolerance, key 2 is equal.
	c, err = checkpoint.Compare(context.Background(), a, b, checkpoint.WithTolerance(1e-3))
	require.NoError(t, err)
	assert.Equal(t, 4, c.Equal)
	assert.Equal(t, 4, c.Different)
	assert.Len(t, c.Fields, 4)

	// The other way round, the sides swap.
	c, err = checkpoint.Compare(context.Background(), b, a)
	require.NoError(t, err)
	assert.Equal(t, 1, c.OnlyA.Count)
	assert.Equal(t, 2, c.OnlyB.Count)
	assert.Equal(t, 2, c.FailedOnlyInA.Count)
	assert.Equal(t, 2, c.FailedOnlyInB.Count)
	assert.Equal(t, 5, c.Different)

	// The JSON is the contract for scripts and the web view.
	c, err = checkpoint.Compare(context.Background(), a, a)
	require.NoError(t, err)
	assert.False(t, c.Differs(), "a checkpoint equals itself")
	assert.Equal(t, 15, c.Both)
	js, err := json.Marshal(c)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(js, &back))
	for _, k := range []string{"a", "b", "tolerance", "both", "only_a", "only_b", "equal", "different",
		"fields", "failed_only_in_a", "failed_only_in_b", "failed_in_both", "params", "metrics"} {
		assert.Contains(t, back, k)
	}
}

// TestComparePythonSample compares the Python-written sample (string keys,
// json.dumps spacing, \u escapes, naive timestamps) with a Go checkpoint.
func TestComparePythonSample(t *testing.T) {
	dir := copySample(t)
	r := open[int](t, dir, checkpoint.WithFresh()) // "job", beside the sample
	type label struct {
		Label string  `json:"label"`
		Score float64 `json:"score"`
	}
	r2, err := checkpoint.Open[int, label]("go", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, r2.SaveResult(1, label{"ok", 0.1}))
	require.NoError(t, r2.SaveResult(2, label{"café", 0.2}))
	require.NoError(t, r2.SaveResult(3, label{"ok", 0.3}))
	require.NoError(t, r2.SaveResult(4, label{"ok", 0.45}))
	require.NoError(t, r2.SaveResult(5, label{"ok", 0.5}))
	require.NoError(t, r2.SaveResult(6, label{"ok", 0.6}))
	require.NoError(t, r2.Close())
	require.NoError(t, r.Close())

	c, err := checkpoint.Compare(context.Background(),
		checkpoint.Ref{Dir: dir, Name: "sample"}, checkpoint.Ref{Dir: dir, Name: "go"})
	require.NoError(t, err)
	assert.Equal(t, 4, c.A.Completed, "key 3 succeeded after its error")
	assert.Equal(t, 1, c.A.Failed)
	assert.Equal(t, 5, c.Both)
	assert.Equal(t, 3, c.Equal, "1, 2 (café escaped by Python), 3")
	assert.Equal(t, 1, c.Different)
	require.Len(t, c.Fields, 1)
	assert.Equal(t, "score", c.Fields[0].Field)
	assert.Equal(t, "4", c.Fields[0].Examples[0].Key)
	assert.Equal(t, checkpoint.Outcomes{Count: 1, Examples: []checkpoint.OutcomeChange{{Key: "5", ErrorA: "timeout after 30s"}}}, c.FailedOnlyInA)
	assert.Equal(t, []string{"6"}, c.OnlyB.Examples)
	assert.Nil(t, c.A.Run, "the Python library keeps no run history")

	// The sample's files are untouched.
	for _, f := range []string{"sample_results.jsonl", "sample_errors.jsonl", "sample_meta.json"} {
		want, err := os.ReadFile(filepath.Join("checkpoints", f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), f)
	}
}

func TestCompareKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	ri, err := checkpoint.Open[int, int]("ints", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, ri.SaveResult(42, 1))
	require.NoError(t, ri.Close())
	rs, err := checkpoint.Open[string, int]("words", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, rs.SaveResult("abc", 1))
	require.NoError(t, rs.Close())
	type pair struct{ A, B int }
	rp, err := checkpoint.Open[pair, int]("pairs", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, rp.SaveResult(pair{1, 2}, 1))
	require.NoError(t, rp.Close())

	ref := func(n string) checkpoint.Ref { return checkpoint.Ref{Dir: dir, Name: n} }
	_, err = checkpoint.Compare(context.Background(), ref("ints"), ref("words"))
	require.ErrorIs(t, err, checkpoint.ErrKeyMismatch)
	assert.Contains(t, err.Error(), `number keys (such as 42)`)
	assert.Contains(t, err.Error(), `string keys (such as "abc")`)
	_, err = checkpoint.Compare(context.Background(), ref("pairs"), ref("ints"))
	require.ErrorIs(t, err, checkpoint.ErrKeyMismatch)
	assert.Contains(t, err.Error(), "object or array keys")
	// Pairs match pairs whatever their spacing.
	c, err := checkpoint.Compare(context.Background(), ref("pairs"), ref("pairs"))
	require.NoError(t, err)
	assert.Equal(t, 1, c.Equal)
}

func TestCompareErrors(t *testing.T) {
	dir := t.TempDir()
	ref := func(n string) checkpoint.Ref { return checkpoint.Ref{Dir: dir, Name: n} }
	r := open[int](t, dir)
	require.NoError(t, r.SaveResult(1, 1))
	require.NoError(t, r.SaveResult(2, 2))

	// A running job does not stop a comparison: no lock is taken.
	c, err := checkpoint.Compare(context.Background(), ref("job"), ref("job"))
	require.NoError(t, err)
	assert.Equal(t, 2, c.Equal)

	_, err = checkpoint.Compare(context.Background(), ref("job"), ref("missing"))
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)
	assert.Contains(t, err.Error(), `"missing"`)
	_, err = checkpoint.Compare(context.Background(), ref("job"), ref("../x"))
	require.Error(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = checkpoint.Compare(ctx, ref("job"), ref("job"))
	// Small files finish before the first check of the context; the
	// history part then runs. Either way no partial result is returned.
	if err != nil {
		assert.ErrorIs(t, err, context.Canceled)
	}
	require.NoError(t, r.Close())

	// A damaged line in the middle is an error that names it; a torn last
	// line (a job writing it now) is not read.
	path := filepath.Join(dir, "job_results.jsonl")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(b, `{"key":3,"resu`...), 0o644))
	c, err = checkpoint.Compare(context.Background(), ref("job"), ref("job"))
	require.NoError(t, err)
	assert.Equal(t, 2, c.Equal)
	require.NoError(t, os.WriteFile(path, append(append([]byte("garbage\n"), b...), '\n'), 0o644))
	_, err = checkpoint.Compare(context.Background(), ref("job"), ref("job"))
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	assert.Contains(t, err.Error(), "line 1")
}

// TestCompareWhileSaving compares a checkpoint with itself while a job
// saves into it: each side is a consistent prefix.
func TestCompareWhileSaving(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range 20000 {
			if r.SaveResult(k%5000, k) != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 5 && time.Now().Before(deadline); n++ {
		c, err := checkpoint.Compare(context.Background(), checkpoint.Ref{Dir: dir, Name: "job"}, checkpoint.Ref{Dir: dir, Name: "job"})
		require.NoError(t, err)
		assert.Equal(t, c.A.Completed, c.Both+c.OnlyA.Count)
	}
	<-done
}
