package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests for the fast paths of the performance work: the batched, two
// goroutine Open; the ordered index behind Iterate and AllResults; the
// key decoders. Each compares the fast path with what the slow one did.

func openQuiet[K comparable, T any](t *testing.T, dir, name string, opts ...Option) *Runner[K, T] {
	t.Helper()
	r, err := Open[K, T](name, append([]Option{WithDir(dir), WithLogger(quietLog)}, opts...)...)
	require.NoError(t, err)
	return r
}

// waitGoroutines fails the test unless the goroutine count falls back to
// want: the reading goroutine of Open must have ended.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), want, "goroutines left behind")
}

// TestOpenRebuildsStateAcrossBatches saves a mix of results and errors that
// spans many load batches, with keys saved several times, and checks that a
// reopened runner has exactly the state the first one had.
func TestOpenRebuildsStateAcrossBatches(t *testing.T) {
	dir := t.TempDir()
	r := openQuiet[int, string](t, dir, "mix")
	n := 3*loadBatchSize + 17
	want := map[int]string{} // key -> latest result, "" if failed
	failures := map[int]int{}
	for i := range n {
		k := i % (n / 2) // every key twice
		switch i % 5 {
		case 0, 3:
			require.NoError(t, r.SaveError(k, fmt.Errorf("boom %d", i)))
			want[k] = ""
			failures[k]++
		default:
			v := fmt.Sprint("v", i)
			require.NoError(t, r.SaveResult(k, v))
			want[k] = v
		}
	}
	before := r.Meta()
	require.NoError(t, r.Close())

	g := runtime.NumGoroutine()
	r2 := openQuiet[int, string](t, dir, "mix")
	defer r2.Close()
	waitGoroutines(t, g)
	after := r2.Meta()
	assert.Equal(t, before.CompletedItems, after.CompletedItems)
	assert.Equal(t, before.FailedItems, after.FailedItems)
	for k, v := range want {
		var got string
		found, err := r2.Result(k, &got)
		require.NoError(t, err)
		assert.Equal(t, v != "", found, "key %d", k)
		assert.Equal(t, v, got, "key %d", k)
		assert.Equal(t, v != "", r2.IsCompleted(k))
	}
	for _, f := range r2.AllErrors() {
		assert.Empty(t, want[f.Key], "key %d failed last", f.Key)
		assert.Equal(t, failures[f.Key], f.Attempts, "key %d", f.Key)
	}
	require.NoError(t, r2.Err())
}

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

// The results and errors files are separate; a key in both is decided by the
// timestamps, whether the files came from this library or from Python.
func TestOpenLatestOutcomeWinsBetweenFiles(t *testing.T) {
	tests := []struct {
		name       string
		results    []string
		errs       []string
		completed  []string
		failed     []string
		firstError map[string]string
	}{
		{
			name:      "result after error",
			results:   []string{`{"key": "a", "result": 1, "timestamp": "2026-01-01T10:00:02"}`},
			errs:      []string{`{"key": "a", "error": "x", "timestamp": "2026-01-01T10:00:01"}`},
			completed: []string{"a"},
		},
		{
			name:    "error after result",
			results: []string{`{"key": "a", "result": 1, "timestamp": "2026-01-01T10:00:01"}`},
			errs:    []string{`{"key": "a", "error": "x", "timestamp": "2026-01-01T10:00:02"}`},
			failed:  []string{"a"},
		},
		{
			name:      "tie goes to the result",
			results:   []string{`{"key": "a", "result": 1, "timestamp": "2026-01-01T10:00:01.5"}`},
			errs:      []string{`{"key": "a", "error": "x", "timestamp": "2026-01-01T10:00:01.500000"}`},
			completed: []string{"a"},
		},
		{
			name: "compact lines with zones, several keys",
			results: []string{
				`{"key":"a","result":{"v":1},"timestamp":"2026-01-01T10:00:05.000000+00:00"}`,
				`{"key":"b","result":[1,2],"timestamp":"2026-01-01T10:00:01.000000+00:00"}`,
				`{"key":"c","result":null,"timestamp":"2026-01-01T10:00:09.000000+00:00"}`,
			},
			errs: []string{
				`{"key":"a","error":"e1","attempt":1,"timestamp":"2026-01-01T10:00:04.000000+00:00"}`,
				`{"key":"b","error":"e2","attempt":1,"timestamp":"2026-01-01T10:00:02.000000+00:00"}`,
				`{"key":"d","error":"e3","attempt":1,"timestamp":"2026-01-01T10:00:03.000000+00:00"}`,
			},
			completed: []string{"a", "c"},
			failed:    []string{"b", "d"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLines(t, filepath.Join(dir, "j_results.jsonl"), tt.results...)
			writeLines(t, filepath.Join(dir, "j_errors.jsonl"), tt.errs...)
			r := openQuiet[string, any](t, dir, "j")
			defer r.Close()
			for _, k := range tt.completed {
				assert.True(t, r.IsCompleted(k), "%s completed", k)
			}
			var failed []string
			for _, f := range r.AllErrors() {
				failed = append(failed, f.Key)
			}
			slices.Sort(failed)
			assert.Equal(t, tt.failed, failed)
			m := r.Meta()
			assert.Equal(t, len(tt.completed), m.CompletedItems)
			assert.Equal(t, len(tt.failed), m.FailedItems)
		})
	}
}

// Files written by the Python library: string keys holding numbers, ", "
// separators, naive timestamps, numeric keys read as strings.
func TestOpenPythonFilesWithFastDecoders(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 2*loadBatchSize + 3 {
		lines = append(lines, fmt.Sprintf(`{"key": "%d", "result": {"n": %d, "s": "caf\u00e9"}, "timestamp": "2026-11-23T13:47:51.518145"}`, i, i))
	}
	writeLines(t, filepath.Join(dir, "py_results.jsonl"), lines...)

	ints := openQuiet[int64, any](t, dir, "py")
	c, _ := ints.Progress()
	assert.Equal(t, len(lines), c)
	var v struct{ N int }
	found, err := ints.Result(int64(len(lines)-1), &v)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, len(lines)-1, v.N)
	require.NoError(t, ints.Close())

	small := openQuiet[uint16, any](t, dir, "py")
	assert.True(t, small.IsCompleted(uint16(len(lines)-1)))
	require.NoError(t, small.Close())

	strs := openQuiet[string, any](t, dir, "py")
	assert.True(t, strs.IsCompleted("0"))
	assert.True(t, strs.IsCompleted(fmt.Sprint(len(lines)-1)))
	require.NoError(t, strs.Close())

	// int8 cannot hold key 200: the error names the file, and no goroutine
	// is left reading.
	g := runtime.NumGoroutine()
	_, err = Open[int8, any]("py", WithDir(dir), WithLogger(quietLog))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "py_results.jsonl")
	assert.Contains(t, err.Error(), "not an integer")
	waitGoroutines(t, g)
}

// A damaged line far from the start (in a later batch) still fails Open with
// ErrCorrupt naming its line, and a torn tail after many lines is repaired.
func TestOpenCorruptionAcrossBatches(t *testing.T) {
	good := func(i int) string {
		return fmt.Sprintf(`{"key":%d,"result":%d,"timestamp":"2026-01-01T10:00:00.000000+00:00"}`, i, i)
	}
	var lines []string
	for i := range 2*loadBatchSize + 100 {
		lines = append(lines, good(i))
	}

	t.Run("corrupt middle line", func(t *testing.T) {
		dir := t.TempDir()
		bad := slices.Clone(lines)
		bad[loadBatchSize+10] = `{"key":5,"resu`
		writeLines(t, filepath.Join(dir, "c_results.jsonl"), bad...)
		g := runtime.NumGoroutine()
		_, err := Open[int, int]("c", WithDir(dir), WithLogger(quietLog))
		require.ErrorIs(t, err, ErrCorrupt)
		assert.Contains(t, err.Error(), fmt.Sprintf("line %d", loadBatchSize+11))
		waitGoroutines(t, g)
		// Nothing was lost or changed: the file is as it was.
		b, rerr := os.ReadFile(filepath.Join(dir, "c_results.jsonl"))
		require.NoError(t, rerr)
		assert.Equal(t, strings.Join(bad, "\n")+"\n", string(b))
	})

	t.Run("torn tail", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "c_results.jsonl")
		writeLines(t, path, lines...)
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString(`{"key":999999,"result":{"half`)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		r := openQuiet[int, int](t, dir, "c")
		c, _ := r.Progress()
		assert.Equal(t, len(lines), c)
		assert.False(t, r.IsCompleted(999999))
		require.NoError(t, r.SaveResult(999999, 1))
		require.NoError(t, r.Close())
		r = openQuiet[int, int](t, dir, "c")
		defer r.Close()
		assert.True(t, r.IsCompleted(999999))
	})
}

// Iterate looks each key up when it reaches the item, whatever order the
// items come in and whatever the loop body saves.
func TestIterateSemanticsWithCursor(t *testing.T) {
	dir := t.TempDir()
	r := openQuiet[int, int](t, dir, "it")
	defer r.Close()
	for _, k := range []int{1, 2, 3, 4, 5, 6} {
		require.NoError(t, r.SaveResult(k, k))
	}
	require.NoError(t, r.SaveError(7, errors.New("x")))

	ident := func(v int) int { return v }
	collect := func(items []int, body func(int)) []int {
		var got []int
		for v := range r.Iterate(items, ident) {
			got = append(got, v)
			if body != nil {
				body(v)
			}
		}
		return got
	}
	assert.Equal(t, []int{7, 8}, collect([]int{1, 2, 3, 4, 5, 6, 7, 8}, nil), "in order")
	assert.Equal(t, []int{8, 7}, collect([]int{6, 8, 4, 2, 7, 1, 3, 5}, nil), "shuffled")

	// A duplicate later in the items is skipped once the first is saved.
	got := collect([]int{9, 1, 9, 2, 9}, func(v int) { require.NoError(t, r.SaveResult(v, v)) })
	assert.Equal(t, []int{9}, got)

	// A key made failed by the loop body is yielded when reached again.
	got = collect([]int{10, 3, 4, 3}, func(v int) {
		if v == 10 {
			require.NoError(t, r.SaveError(3, errors.New("redo")))
		}
	})
	assert.Equal(t, []int{10, 3, 3}, got)

	// Clear in the middle: the rest is pending.
	got = collect([]int{11, 1, 2, 5}, func(v int) {
		if v == 11 {
			require.NoError(t, r.Clear())
		}
	})
	assert.Equal(t, []int{11, 1, 2, 5}, got)
}

func TestIterateSeqWithCursor(t *testing.T) {
	dir := t.TempDir()
	r := openQuiet[string, string](t, dir, "seq")
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, r.SaveResult(k, k))
	}
	seq := slices.Values([]string{"c", "a", "x", "b", "y", "a"})
	assert.Equal(t, []string{"x", "y"}, slices.Collect(r.IterateSeq(seq, func(s string) string { return s })))
	_, total := r.Progress()
	assert.Equal(t, 6, total)

	require.NoError(t, r.Close())
	assert.Empty(t, slices.Collect(r.IterateSeq(seq, func(s string) string { return s })))
	assert.ErrorIs(t, r.Err(), ErrClosed)
}

// AllResults yields each key's latest result once, in the order saved:
// older lines of a re-saved key are skipped; during the loop, a new key is
// not yielded and a re-saved one is yielded once with its latest result.
func TestAllResultsLatestOnce(t *testing.T) {
	dir := t.TempDir()
	r := openQuiet[int, int](t, dir, "all")
	defer r.Close()
	for i := range 10 {
		require.NoError(t, r.SaveResult(i, i))
	}
	require.NoError(t, r.SaveResult(3, 33))
	require.NoError(t, r.SaveError(5, errors.New("x")))

	type kv struct {
		K int
		V string
	}
	var got []kv
	for k, v := range r.AllResults() {
		got = append(got, kv{k, string(v)})
		if k == 0 {
			require.NoError(t, r.SaveResult(100, 100))
			require.NoError(t, r.SaveResult(7, 77))
		}
	}
	require.NoError(t, r.Err())
	want := []kv{{0, "0"}, {1, "1"}, {2, "2"}, {4, "4"}, {6, "6"}, {7, "77"}, {8, "8"}, {9, "9"}, {3, "33"}}
	assert.Equal(t, want, got)

	// After a reopen (a new index, in file order) the same holds.
	require.NoError(t, r.Close())
	r = openQuiet[int, int](t, dir, "all")
	defer r.Close()
	got = got[:0]
	for k, v := range r.AllResults() {
		got = append(got, kv{k, string(v)})
	}
	want = []kv{{0, "0"}, {1, "1"}, {2, "2"}, {4, "4"}, {6, "6"}, {8, "8"}, {9, "9"}, {3, "33"}, {100, "100"}, {7, "77"}}
	assert.Equal(t, want, got)

	// The values are copies the caller may keep.
	var kept []json.RawMessage
	for _, v := range r.AllResults() {
		kept = append(kept, v)
	}
	assert.Equal(t, json.RawMessage("0"), kept[0])
}

type upperMarshaler string

func (u upperMarshaler) MarshalJSON() ([]byte, error) {
	return []byte(` { "v" : "` + strings.ToUpper(string(u)) + `" } `), nil
}

type failingMarshaler struct{}

func (failingMarshaler) MarshalJSON() ([]byte, error) { return nil, errors.New("no") }

// SaveResult encodes into a pooled buffer instead of calling json.Marshal;
// the line must be the one appendResultLine builds from json.Marshal.
func TestSaveResultLineMatchesMarshal(t *testing.T) {
	values := []any{
		nil, 1.5, "plain", "<tag> & \"quotes\" \u2028", string([]byte{0xff, 'a'}),
		map[string]int{"b": 2, "a": 1},
		json.RawMessage(` { "spaced" : [ 1 , 2 ] } `),
		upperMarshaler("x"),
		newBenchRecord(42),
		strings.Repeat("big", maxPooledLine), // larger than the pool keeps
		[]any{nil, true, 3},
	}
	dir := t.TempDir()
	r := openQuiet[string, any](t, dir, "lines")
	for i, v := range values {
		require.NoError(t, r.SaveResult(fmt.Sprint("k", i), v), "value %d", i)
	}
	require.NoError(t, r.Close())
	b, err := os.ReadFile(filepath.Join(dir, "lines_results.jsonl"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, lines, len(values))
	for i, v := range values {
		res, err := json.Marshal(v)
		require.NoError(t, err)
		key := []byte(fmt.Sprintf("%q", fmt.Sprint("k", i)))
		want := string(appendResultLine(nil, key, res, time.Time{}))
		cut := len(want) - len(tsLayout) - len("\"}\n")
		require.Equal(t, want[:cut], lines[i][:cut], "value %d", i)
		_, ok := parseTimestamp([]byte(lines[i][cut : len(lines[i])-2]))
		assert.True(t, ok, "timestamp of line %d", i)
	}
}

func TestSaveResultErrorsWriteNothing(t *testing.T) {
	dir := t.TempDir()
	r := openQuiet[string, any](t, dir, "errs")
	defer r.Close()
	err := r.SaveResult("k", failingMarshaler{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "result for key k")
	err = r.SaveResult("k", make(chan int))
	var unsupported *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &unsupported)
	// A bad key and a bad result: the result's error, as json.Marshal
	// used to be called first.
	err = r.SaveResult(string([]byte{0xff}), make(chan int))
	assert.ErrorAs(t, err, &unsupported)
	err = r.SaveResult(string([]byte{0xff}), 1)
	assert.ErrorIs(t, err, errKeyUTF8)
	require.NoError(t, r.SaveResult("ok", 1))
	b, err := os.ReadFile(filepath.Join(dir, "errs_results.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(b), "\n"))
	assert.True(t, strings.HasPrefix(string(b), `{"key":"ok","result":1,"timestamp":"`))
	c, _ := r.Progress()
	assert.Equal(t, 1, c)
}

func TestSizeHintsKeyBytes(t *testing.T) {
	line := func(k string) string {
		return fmt.Sprintf(`{"key":%q,"result":1,"timestamp":"2026-01-01T10:00:00.000000+00:00"}`, k)
	}
	var uniform []string
	want := 0
	for i := range 5000 {
		k := fmt.Sprintf("doc-%06d", i)
		uniform = append(uniform, line(k))
		want += len(k) + 2 // with its quotes
	}
	tests := []struct {
		name    string
		content string
		lo, hi  int
	}{
		{"empty", "", 0, 0},
		{"uniform keys", strings.Join(uniform, "\n") + "\n", want * 9 / 10, want * 11 / 10},
		{"no complete line", `{"key":"abc","res`, 0, 0},
		{"garbage", strings.Repeat("x", 100) + "\n", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o644))
			o := defaultOptions()
			j, err := openJournal(path, &o)
			require.NoError(t, err)
			defer j.f.Close()
			_, got := j.sizeHints()
			assert.GreaterOrEqual(t, got, tt.lo)
			assert.LessOrEqual(t, got, tt.hi)
		})
	}
}

// The arena is sized from the first block; keys past what it holds (here
// far longer than the first ones) go to new blocks and come back intact.
func TestOpenStringKeysOutgrowTheReservation(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 3 * loadBatchSize {
		k := fmt.Sprint(i)
		if i > loadBatchSize {
			k = strings.Repeat("long-key-", 20) + k
		}
		lines = append(lines, fmt.Sprintf(`{"key":%q,"result":%d,"timestamp":"2026-01-01T10:00:00.000000+00:00"}`, k, i))
	}
	writeLines(t, filepath.Join(dir, "grow_results.jsonl"), lines...)
	r := openQuiet[string, string](t, dir, "grow")
	defer r.Close()
	c, _ := r.Progress()
	assert.Equal(t, len(lines), c)
	i := 0
	for k, v := range r.AllResults() {
		want := fmt.Sprint(i)
		if i > loadBatchSize {
			want = strings.Repeat("long-key-", 20) + want
		}
		require.Equal(t, want, k)
		require.Equal(t, fmt.Sprint(i), string(v))
		i++
	}
	assert.Equal(t, len(lines), i)
	assert.True(t, r.IsCompleted(strings.Repeat("long-key-", 20)+fmt.Sprint(len(lines)-1)))
}

// TestMetaRewriteOffTheSavingGoroutine: the save that makes the meta file
// due returns while the rewrite is still blocked (here in its rename), the
// rewrite then lands, and Close waits for it: no goroutine is left behind.
func TestMetaRewriteOffTheSavingGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var block atomic.Bool
	rename := func(oldpath, newpath string) error {
		if block.Load() {
			entered <- struct{}{}
			<-release
		}
		return os.Rename(oldpath, newpath)
	}
	r := openQuiet[int, string](t, dir, "meta", withRename(rename))
	require.NoError(t, r.SaveResult(1, "a"))
	block.Store(true)
	r.metaDue.Store(0) // a second has passed
	saved := make(chan error, 1)
	go func() { saved <- r.SaveResult(2, "b") }()
	select {
	case err := <-saved:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("SaveResult waited for the meta rewrite")
	}
	<-entered // the rewrite is under way, blocked
	require.NoError(t, r.SaveResult(3, "c"), "saves go on meanwhile")
	block.Store(false)
	close(release)
	require.NoError(t, r.Close())
	m, err := readMeta(filepath.Join(dir, "meta_meta.json"))
	require.NoError(t, err)
	assert.Equal(t, 3, m.CompletedItems)
	waitGoroutines(t, before)
}

// TestIterateShuffledReadsAhead: over shuffled items (the read-ahead path of
// keyAhead), Iterate yields exactly the items not completed (never seen, or
// failed: both are looked up again as reached), each key once
// even when a duplicate follows within the same read-ahead batch and the
// first was saved in the loop, and calls keyFn once per item.
func TestIterateShuffledReadsAhead(t *testing.T) {
	r := openQuiet[int, int](t, t.TempDir(), "shuffled")
	defer r.Close()
	const n = 10 * prefetchLen
	for i := 0; i < n; i += 2 {
		require.NoError(t, r.SaveResult(i, "done"))
		if i%4 == 0 { // failed keys are in the index too, and still pending
			require.NoError(t, r.SaveError(i+1, errors.New("not yet")))
		}
	}
	items := make([]int, 0, n+n/4)
	for i := range n {
		items = append(items, i)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	for i := 0; i < n/4; i++ { // duplicates right after their first
		p := rng.IntN(len(items) - 1)
		items = slices.Insert(items, p+1, items[p])
	}
	calls := 0
	seen := map[int]int{}
	for it := range r.Iterate(items, func(v int) int { calls++; return v }) {
		seen[it]++
		require.NoError(t, r.SaveResult(it, "now"))
	}
	require.NoError(t, r.Err())
	assert.Equal(t, len(items), calls, "keyFn once per item")
	assert.Len(t, seen, n/2)
	for k, c := range seen {
		assert.Equal(t, 1, c, "key %d", k)
		assert.Equal(t, 1, k%2, "key %d was completed", k)
	}
}

// BenchmarkIterateShuffledVsMap is the shuffled-Iterate figure of the bench
// table as a focused benchmark, for profiling: 10M completed int64 keys in
// shuffled order. Each iteration runs Iterate once and then the loop over a
// map[int64]bool of the same keys, in the same order, and the ratio of the
// two rates is reported per iteration (ratio-median over b.N, with -count
// for spread).
func BenchmarkIterateShuffledVsMap(b *testing.B) {
	n := 10_000_000
	if testing.Short() {
		n = 100_000
	}
	dir := b.TempDir()
	writeBenchResults(b, dir, "ints", n, func(i int) int64 { return int64(i) })
	r, err := Open[int64, int64]("ints", WithDir(dir), WithLogger(quietLog))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	items := make([]int64, n)
	done := make(map[int64]bool, n)
	for i := range items {
		items[i] = int64(i)
		done[int64(i)] = true
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { items[i], items[j] = items[j], items[i] })
	key := func(v int64) int64 { return v }
	var ratios []float64
	var itTime, mapTime time.Duration
	for b.Loop() {
		start := time.Now()
		for range r.Iterate(items, key) {
			b.Fatal("a completed item was yielded")
		}
		it := time.Since(start)
		start = time.Now()
		for _, v := range items {
			if !done[key(v)] {
				b.Fatal("missing key")
			}
		}
		mp := time.Since(start)
		itTime, mapTime = itTime+it, mapTime+mp
		ratios = append(ratios, mp.Seconds()/it.Seconds())
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "ratio-median")
	b.ReportMetric(float64(n)*float64(len(ratios))/itTime.Seconds(), "iterate-items/s")
	b.ReportMetric(float64(n)*float64(len(ratios))/mapTime.Seconds(), "map-items/s")
}

// TestIterateReadAheadOrders: items that switch between shuffled stretches
// (the read-ahead pipeline of keyAhead) and stretches in save order (the
// cursor, once the batches read ahead are used up) are yielded exactly as a
// plain loop over a map of the completed keys would yield them, each key
// once although the loop saves every yielded key, with keyFn called once
// per item.
func TestIterateReadAheadOrders(t *testing.T) {
	const n = 20 * prefetchLen
	tests := []struct {
		name   string
		stages []bool // per stretch of n/4 keys: shuffled or in order
	}{
		{"shuffled then in order", []bool{true, true, false, false}},
		{"in order then shuffled", []bool{false, false, true, true}},
		{"alternating", []bool{true, false, true, false}},
		{"all shuffled", []bool{true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := openQuiet[int, int](t, t.TempDir(), "orders")
			defer r.Close()
			done := map[int]bool{}
			for i := range n {
				if i%3 != 0 {
					require.NoError(t, r.SaveResult(i, "done"))
					done[i] = true
				}
			}
			rng := rand.New(rand.NewPCG(7, 8))
			var items []int
			for s, shuffled := range tt.stages {
				part := make([]int, 0, n/4)
				for i := s * n / 4; i < (s+1)*n/4; i++ {
					part = append(part, i)
				}
				if shuffled {
					rng.Shuffle(len(part), func(i, j int) { part[i], part[j] = part[j], part[i] })
				}
				items = append(items, part...)
			}
			items = append(items, items[:n/8]...) // duplicates of the first stretch
			var want []int
			for _, it := range items {
				if !done[it] {
					want = append(want, it)
					done[it] = true
				}
			}
			calls := 0
			var got []int
			for it := range r.Iterate(items, func(v int) int { calls++; return v }) {
				got = append(got, it)
				require.NoError(t, r.SaveResult(it, "now"))
			}
			require.NoError(t, r.Err())
			assert.Equal(t, want, got)
			assert.Equal(t, len(items), calls, "keyFn once per item")
		})
	}
}

// TestIterateShuffledWhileClosing: Close gives the index's memory back
// (mapped tables, on Linux) while a shuffled Iterate reads ahead and looks
// keys up on another goroutine, and saves go on on a third. The loop must
// end cleanly, reporting ErrClosed if it was cut short, never reading the
// memory given back (which would crash, or fail under -race).
func TestIterateShuffledWhileClosing(t *testing.T) {
	const n = 200_000 // past one table chunk: mapped where it can be
	tests := []struct {
		name  string
		delay time.Duration
	}{{"at once", 0}, {"mid loop", 2 * time.Millisecond}, {"later", 20 * time.Millisecond}}
	dir := t.TempDir()
	writeBenchResults(t, dir, "ints", n, func(i int) int64 { return int64(i) })
	items := make([]int64, n+n/10) // some keys are not saved: yielded
	for i := range items {
		items[i] = int64(i)
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := openQuiet[int64, int64](t, dir, "ints")
			if runtime.GOOS == "linux" {
				r.mu.RLock()
				assert.NotEmpty(t, r.index.mem.live, "the index's table is mapped")
				r.mu.RUnlock()
			}
			var wg sync.WaitGroup
			var yielded atomic.Int64
			wg.Go(func() {
				for v := range r.Iterate(items, func(v int64) int64 { return v }) {
					yielded.Add(1)
					if err := r.SaveResult(v, v); err != nil {
						assert.ErrorIs(t, err, ErrClosed)
					}
				}
			})
			wg.Go(func() {
				for i := range int64(1000) {
					if err := r.SaveResult(-i-1, i); err != nil {
						assert.ErrorIs(t, err, ErrClosed)
						return
					}
				}
			})
			time.Sleep(tt.delay)
			require.NoError(t, r.Close())
			wg.Wait()
			assert.LessOrEqual(t, yielded.Load(), int64(n/10), "only unsaved keys are yielded")
			if yielded.Load() < n/10 {
				assert.ErrorIs(t, r.Err(), ErrClosed, "a loop cut short by Close says so")
			}
			r.mu.RLock()
			assert.Empty(t, r.index.mem.live, "Close gave the mapped memory back")
			r.mu.RUnlock()
		})
	}
}
