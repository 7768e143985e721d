package checkpoint_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

var quiet = checkpoint.WithLogger(slog.New(slog.DiscardHandler))

// open opens checkpoint "job" in dir and closes it when the test ends.
func open[K comparable](t *testing.T, dir string, opts ...checkpoint.Option) *checkpoint.Runner[K, K] {
	t.Helper()
	r, err := checkpoint.Open[K, K]("job", append([]checkpoint.Option{checkpoint.WithDir(dir), quiet}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func identity[K any](k K) K { return k }

func collect[K comparable](r *checkpoint.Runner[K, K], items []K) []K {
	return slices.Collect(r.Iterate(items, identity[K]))
}

// readLines parses every line of a JSONL file, failing on any that is not a
// JSON object or does not end in a newline.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	if len(b) == 0 {
		return nil
	}
	require.True(t, strings.HasSuffix(string(b), "\n"), "%s does not end in a newline", path)
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue // as the Python library's loader does
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "%s line %d: %q", path, i+1, line)
		out = append(out, m)
	}
	return out
}

func TestIterate(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		opts  []checkpoint.Option
		setup func(r *checkpoint.Runner[int, int])
		items []int
		want  []int
	}{
		{
			name:  "fresh checkpoint yields everything",
			items: []int{1, 2, 3},
			want:  []int{1, 2, 3},
		},
		{
			name: "completed keys are skipped",
			setup: func(r *checkpoint.Runner[int, int]) {
				r.SaveResult(2, "done")
			},
			items: []int{1, 2, 3},
			want:  []int{1, 3},
		},
		{
			name: "failed keys are retried",
			setup: func(r *checkpoint.Runner[int, int]) {
				r.SaveError(1, boom)
				r.SaveResult(2, "done")
			},
			items: []int{1, 2, 3},
			want:  []int{1, 3},
		},
		{
			name: "a key that used up its attempts is skipped",
			opts: []checkpoint.Option{checkpoint.WithMaxAttempts(2)},
			setup: func(r *checkpoint.Runner[int, int]) {
				r.SaveError(1, boom)
				r.SaveError(1, boom)
				r.SaveError(2, boom)
			},
			items: []int{1, 2, 3},
			want:  []int{2, 3},
		},
		{
			name: "no attempt limit retries forever",
			setup: func(r *checkpoint.Runner[int, int]) {
				for range 50 {
					r.SaveError(1, boom)
				}
			},
			items: []int{1},
			want:  []int{1},
		},
		{
			name:  "an unsaved duplicate key is yielded each time",
			items: []int{1, 1, 2},
			want:  []int{1, 1, 2},
		},
		{
			name:  "empty input",
			items: nil,
			want:  nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := open[int](t, dir, tc.opts...)
			if tc.setup != nil {
				tc.setup(r)
			}
			assert.Equal(t, tc.want, collect(r, tc.items))

			// The same holds after a restart.
			require.NoError(t, r.Close())
			r = open[int](t, dir, tc.opts...)
			assert.Equal(t, tc.want, collect(r, tc.items))
			assert.NoError(t, r.Err())
		})
	}
}

func TestIterateSkipsDuplicateOnceSaved(t *testing.T) {
	r := open[int](t, t.TempDir())
	var got []int
	for item := range r.Iterate([]int{7, 8, 7, 9}, identity[int]) {
		got = append(got, item)
		require.NoError(t, r.SaveResult(item, item))
	}
	assert.Equal(t, []int{7, 8, 9}, got)
}

func TestIterateBreak(t *testing.T) {
	r := open[int](t, t.TempDir())
	n := 0
	for item := range r.Iterate([]int{1, 2, 3, 4}, identity[int]) {
		require.NoError(t, r.SaveResult(item, item))
		if n++; n == 2 {
			break
		}
	}
	assert.Equal(t, []int{3, 4}, collect(r, []int{1, 2, 3, 4}))
}

func TestIterateSeq(t *testing.T) {
	r := open[int](t, t.TempDir())
	require.NoError(t, r.SaveResult(2, "x"))
	stream := func(yield func(int) bool) {
		for i := 1; i <= 5; i++ {
			if !yield(i) {
				return
			}
		}
	}
	var got []int
	for item := range r.IterateSeq(stream, identity[int]) {
		got = append(got, item)
		done, total := r.Progress()
		assert.Equal(t, 1, done)
		assert.Equal(t, item, total, "total counts the items seen so far")
	}
	assert.Equal(t, []int{1, 3, 4, 5}, got)
}

// TestLatestOutcomeWins saves a sequence of outcomes for one key and checks
// the key's state, live and again after a restart, where the order between
// the results and the errors file comes from the timestamps.
func TestLatestOutcomeWins(t *testing.T) {
	type outcome struct {
		result string // saved with SaveResult if err is empty
		err    string
	}
	res := func(s string) outcome { return outcome{result: s} }
	fail := func(s string) outcome { return outcome{err: s} }
	tests := []struct {
		name         string
		outcomes     []outcome
		wantDone     bool
		wantResult   string
		wantError    string
		wantAttempts int
	}{
		{"one result", []outcome{res("a")}, true, "a", "", 0},
		{"one error", []outcome{fail("e1")}, false, "", "e1", 1},
		{"error then result clears the error", []outcome{fail("e1"), res("a")}, true, "a", "", 1},
		{"result then error", []outcome{res("a"), fail("e1")}, false, "", "e1", 1},
		{"second result replaces the first", []outcome{res("a"), res("b")}, true, "b", "", 0},
		{"the latest of several errors", []outcome{fail("e1"), fail("e2"), fail("e3")}, false, "", "e3", 3},
		{"errors, success, error again", []outcome{fail("e1"), fail("e2"), res("a"), fail("e3")}, false, "", "e3", 3},
		{"error, result, error, result", []outcome{fail("e1"), res("a"), fail("e2"), res("b")}, true, "b", "", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := open[string](t, dir)
			require.NoError(t, r.SaveResult("other", "x"))
			for _, o := range tc.outcomes {
				if o.err != "" {
					require.NoError(t, r.SaveError("k", errors.New(o.err)))
				} else {
					require.NoError(t, r.SaveResult("k", o.result))
				}
			}
			check := func(r *checkpoint.Runner[string, string]) {
				t.Helper()
				assert.Equal(t, tc.wantDone, r.IsCompleted("k"))
				var got string
				found, err := r.Result("k", &got)
				require.NoError(t, err)
				assert.Equal(t, tc.wantDone, found)
				assert.Equal(t, tc.wantResult, got)

				results := map[string]string{}
				for k, v := range r.AllResults() {
					_, dup := results[k]
					require.False(t, dup, "AllResults yielded %q twice", k)
					results[k] = string(v)
				}
				if tc.wantDone {
					assert.Equal(t, map[string]string{"other": `"x"`, "k": fmt.Sprintf("%q", tc.wantResult)}, results)
				} else {
					assert.Equal(t, map[string]string{"other": `"x"`}, results)
				}

				failures := r.AllErrors()
				if tc.wantError == "" {
					assert.Empty(t, failures)
				} else if assert.Len(t, failures, 1) {
					assert.Equal(t, "k", failures[0].Key)
					assert.Equal(t, tc.wantError, failures[0].Error)
					assert.Equal(t, tc.wantAttempts, failures[0].Attempts)
					assert.False(t, failures[0].Time.IsZero())
				}
				m := r.Meta()
				wantCompleted, wantFailed := 1, 0
				if tc.wantDone {
					wantCompleted++
				} else {
					wantFailed++
				}
				assert.Equal(t, wantCompleted, m.CompletedItems)
				assert.Equal(t, wantFailed, m.FailedItems)
				assert.NoError(t, r.Err())
			}
			check(r)
			require.NoError(t, r.Close())
			check(open[string](t, dir))
		})
	}
}

func TestProgressAndMeta(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	done, total := r.Progress()
	assert.Equal(t, 0, done)
	assert.Equal(t, 0, total)

	items := []int{1, 2, 3, 4, 5}
	for item := range r.Iterate(items, identity[int]) {
		if item == 3 {
			require.NoError(t, r.SaveError(item, errors.New("nope")))
			continue
		}
		require.NoError(t, r.SaveResult(item, item*item))
	}
	done, total = r.Progress()
	assert.Equal(t, 4, done)
	assert.Equal(t, 5, total)
	require.NoError(t, r.Close())

	// The meta file has exactly the fields the Python library accepts.
	b, err := os.ReadFile(filepath.Join(dir, "job_meta.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.ElementsMatch(t,
		[]string{"experiment_name", "started_at", "last_updated", "total_items", "completed_items", "failed_items", "schema_version"},
		slices.Collect(mapKeys(m)))
	assert.Equal(t, "job", m["experiment_name"])
	assert.EqualValues(t, 5, m["total_items"])
	assert.EqualValues(t, 4, m["completed_items"])
	assert.EqualValues(t, 1, m["failed_items"])
	assert.Equal(t, "1.0.0", m["schema_version"])
	assert.Contains(t, string(b), "\n  \"experiment_name\"", "meta is indented")

	// Before any Iterate, the total comes from the meta file.
	r = open[int](t, dir)
	done, total = r.Progress()
	assert.Equal(t, 4, done)
	assert.Equal(t, 5, total)
	meta := r.Meta()
	assert.Equal(t, "job", meta.Name)
	assert.Equal(t, checkpoint.SchemaVersion, meta.SchemaVersion)
	assert.False(t, meta.StartedAt.IsZero())
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestFilesAreJSONLines(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	require.NoError(t, r.SaveResult(1, map[string]any{"text": "a\nb", "n": 1.5}))
	require.NoError(t, r.SaveError(2, errors.New(`bad "quote"`)))
	require.NoError(t, r.SaveError(2, errors.New("again")))

	results := readLines(t, filepath.Join(dir, "job_results.jsonl"))
	require.Len(t, results, 1)
	assert.EqualValues(t, 1, results[0]["key"])
	assert.Equal(t, map[string]any{"text": "a\nb", "n": 1.5}, results[0]["result"])
	assert.NotEmpty(t, results[0]["timestamp"])

	errs := readLines(t, filepath.Join(dir, "job_errors.jsonl"))
	require.Len(t, errs, 2)
	assert.Equal(t, `bad "quote"`, errs[0]["error"])
	assert.EqualValues(t, 1, errs[0]["attempt"])
	assert.EqualValues(t, 2, errs[1]["attempt"])
}

func TestConcurrentSaves(t *testing.T) {
	const workers, perWorker = 8, 500
	dir := t.TempDir()
	r := open[string](t, dir)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				key := fmt.Sprintf("w%d-%d", w, i)
				if i%10 == 0 {
					assert.NoError(t, r.SaveError(key, errors.New("flaky")))
				}
				assert.NoError(t, r.SaveResult(key, map[string]int{"w": w, "i": i}))
				assert.True(t, r.IsCompleted(key))
				r.Progress()
			}
		})
	}
	// Readers run alongside the writers.
	wg.Go(func() {
		for range 20 {
			for range r.AllResults() {
			}
			r.AllErrors()
			r.Meta()
		}
	})
	wg.Wait()
	done, _ := r.Progress()
	assert.Equal(t, workers*perWorker, done)
	assert.Empty(t, r.AllErrors())
	require.NoError(t, r.Close())

	assert.Len(t, readLines(t, filepath.Join(dir, "job_results.jsonl")), workers*perWorker)
	assert.Len(t, readLines(t, filepath.Join(dir, "job_errors.jsonl")), workers*perWorker/10)
	r = open[string](t, dir)
	n := 0
	for k, v := range r.AllResults() {
		var got map[string]int
		require.NoError(t, json.Unmarshal(v, &got))
		assert.Equal(t, k, fmt.Sprintf("w%d-%d", got["w"], got["i"]))
		n++
	}
	assert.Equal(t, workers*perWorker, n)
	assert.Empty(t, r.AllErrors())
	assert.NoError(t, r.Err())
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)

	_, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet)
	require.ErrorIs(t, err, checkpoint.ErrLocked)
	assert.Contains(t, err.Error(), `"job"`)

	// Another key type changes nothing: the files are the same.
	_, err = checkpoint.Open[string, int]("job", checkpoint.WithDir(dir), quiet)
	require.ErrorIs(t, err, checkpoint.ErrLocked)

	// Another name in the same folder is another checkpoint.
	other, err := checkpoint.Open[int, int]("other", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, other.Close())

	require.NoError(t, r.Close())
	again, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	require.NoError(t, again.Close())
}

func TestClosed(t *testing.T) {
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(t.TempDir()), quiet)
	require.NoError(t, err)
	require.NoError(t, r.SaveResult(1, 1))
	require.NoError(t, r.Close())

	assert.ErrorIs(t, r.SaveResult(2, 2), checkpoint.ErrClosed)
	assert.ErrorIs(t, r.SaveError(2, errors.New("x")), checkpoint.ErrClosed)
	_, err = r.Result(1, new(int))
	assert.ErrorIs(t, err, checkpoint.ErrClosed)
	assert.ErrorIs(t, r.Clear(), checkpoint.ErrClosed)
	assert.ErrorIs(t, r.Close(), checkpoint.ErrClosed)

	assert.Empty(t, collect(r, []int{1, 2, 3}))
	assert.ErrorIs(t, r.Err(), checkpoint.ErrClosed)
	for range r.AllResults() {
		t.Fatal("AllResults yielded after Close")
	}
	assert.Nil(t, r.AllErrors())
}

func TestClear(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	require.NoError(t, r.SaveResult(1, "a"))
	require.NoError(t, r.SaveError(2, errors.New("e")))
	collect(r, []int{1, 2, 3})

	require.NoError(t, r.Clear())
	assert.False(t, r.IsCompleted(1))
	assert.Empty(t, r.AllErrors())
	done, total := r.Progress()
	assert.Zero(t, done)
	assert.Zero(t, total)
	assert.Equal(t, []int{1, 2, 3}, collect(r, []int{1, 2, 3}))

	// The runner stays usable, and only what came after Clear survives.
	require.NoError(t, r.SaveResult(3, "c"))
	require.NoError(t, r.Close())
	r = open[int](t, dir)
	assert.Equal(t, []int{1, 2}, collect(r, []int{1, 2, 3}))
	assert.Empty(t, r.AllErrors())
}

func TestFresh(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	require.NoError(t, r.SaveResult(1, "a"))
	require.NoError(t, r.SaveError(2, errors.New("e")))
	require.NoError(t, r.Close())

	r = open[int](t, dir, checkpoint.WithFresh())
	assert.Equal(t, []int{1, 2}, collect(r, []int{1, 2}))
	assert.Empty(t, r.AllErrors())
	assert.Equal(t, 0, r.Meta().CompletedItems)
}

func TestAllResultsWhileSaving(t *testing.T) {
	r := open[int](t, t.TempDir())
	for i := range 100 {
		require.NoError(t, r.SaveResult(i, i))
	}
	require.NoError(t, r.SaveResult(99, 99)) // an older line for key 99
	require.NoError(t, r.SaveResult(5, 5))
	// Saving inside the loop must neither deadlock nor loop forever. New keys
	// are not yielded; a key saved again is yielded once, with the result
	// that is latest when the loop reaches it.
	got := map[int]int{}
	for k, v := range r.AllResults() {
		_, dup := got[k]
		require.False(t, dup, "key %d yielded twice", k)
		var n int
		require.NoError(t, json.Unmarshal(v, &n))
		got[k] = n
		if k < 50 {
			require.NoError(t, r.SaveResult(k+1000, k))
			require.NoError(t, r.SaveResult(k, -k))
			require.NoError(t, r.SaveResult(k+50, -(k+50)))
		}
	}
	require.Len(t, got, 100)
	for k, n := range got {
		switch {
		case k < 50 || k == 55: // key 5's latest line is last: 55 was reached first
			assert.Equal(t, k, n, "key %d was reached before it was saved again", k)
		default:
			assert.Equal(t, -k, n, "key %d was saved again before the loop reached it", k)
		}
	}
	assert.NoError(t, r.Err())
}

func TestResultDecodes(t *testing.T) {
	type answer struct {
		Label string  `json:"label"`
		Score float64 `json:"score"`
	}
	r := open[int](t, t.TempDir())
	require.NoError(t, r.SaveResult(1, answer{"cat", 0.9}))

	var got answer
	found, err := r.Result(1, &got)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, answer{"cat", 0.9}, got)

	found, err = r.Result(2, &got)
	assert.NoError(t, err)
	assert.False(t, found)

	var wrong []int
	found, err = r.Result(1, &wrong)
	assert.True(t, found)
	assert.Error(t, err, "a result that does not fit v is an error")
}

func TestLogsResume(t *testing.T) {
	dir := t.TempDir()
	r := open[int](t, dir)
	require.NoError(t, r.SaveResult(1, 1))
	require.NoError(t, r.Close())

	var log strings.Builder
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir),
		checkpoint.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	require.NoError(t, err)
	defer r.Close()
	assert.Contains(t, log.String(), "resumed")
	assert.Contains(t, log.String(), "completed=1")
}

// scanFile returns the lines of a file, for tests that compare files.
func scanFile(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	return lines
}
