package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var inspectQuiet = WithLogger(slog.New(slog.DiscardHandler))

// mixedCheckpoint writes a checkpoint with every kind of history a key can
// have, and leaves it closed.
func mixedCheckpoint(t *testing.T, dir string) {
	t.Helper()
	r, err := Open[int, int]("mix", WithDir(dir), inspectQuiet)
	require.NoError(t, err)
	for i := range 60 {
		switch i % 5 {
		case 0:
			require.NoError(t, r.SaveResult(i, i))
			require.NoError(t, r.SaveResult(i, i*10)) // supersedes
		case 1:
			require.NoError(t, r.SaveError(i, fmt.Errorf("e%d", i)))
			require.NoError(t, r.SaveError(i, fmt.Errorf("e%d again", i)))
		case 2:
			require.NoError(t, r.SaveError(i, errors.New("flaky")))
			require.NoError(t, r.SaveResult(i, i))
		case 3:
			require.NoError(t, r.SaveResult(i, i))
			require.NoError(t, r.SaveError(i, errors.New("regressed")))
		default:
			require.NoError(t, r.SaveResult(i, i))
		}
	}
	require.NoError(t, r.Close())
}

func TestInspectAgreesWithOpen(t *testing.T) {
	dir := t.TempDir()
	mixedCheckpoint(t, dir)
	v, err := Inspect(dir, "mix")
	require.NoError(t, err)
	defer v.Close()
	in := v.Info()
	viewResults := map[string]string{}
	for k, res := range v.Results() {
		viewResults[KeyText(k)] = string(res)
	}
	viewFailures := map[string]string{}
	for f := range v.Failures() {
		viewFailures[KeyText(f.Key)] = fmt.Sprintf("%s %d", f.Error, f.Attempts)
	}
	require.NoError(t, v.Err())

	r, err := Open[int, json.RawMessage]("mix", WithDir(dir), inspectQuiet)
	require.NoError(t, err)
	defer r.Close()
	m := r.Meta()
	assert.Equal(t, m.CompletedItems, in.Completed)
	assert.Equal(t, m.FailedItems, in.Failed)
	openResults := map[string]string{}
	for k, res := range r.AllResults() {
		openResults[fmt.Sprint(k)] = string(res)
	}
	openFailures := map[string]string{}
	for _, f := range r.AllErrors() {
		openFailures[fmt.Sprint(f.Key)] = fmt.Sprintf("%s %d", f.Error, f.Attempts)
	}
	assert.Equal(t, openResults, viewResults)
	assert.Equal(t, openFailures, viewFailures)

	// 12 keys each of kinds 0..4: superseded results are kind 0's first and
	// kind 3's; superseded errors are kind 2's.
	assert.Equal(t, 36, in.Completed)
	assert.Equal(t, 24, in.Failed)
	assert.Equal(t, JournalInfo{Path: filepath.Join(dir, "mix_results.jsonl"), Size: in.Results.Size, Records: 60, Superseded: 24}, in.Results)
	assert.Equal(t, 12, in.Errors.Superseded)
	assert.Equal(t, 48, in.Errors.Records)
	assert.False(t, in.Running)
	assert.Empty(t, in.SideFiles)
}

// A live file's torn last line is a record being written: Inspect leaves it
// out and repairs nothing; Open repairs it.
func TestInspectTornTailIsAbsent(t *testing.T) {
	dir := t.TempDir()
	mixedCheckpoint(t, dir)
	p := filepath.Join(dir, "mix_results.jsonl")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"key":1000,"result":{"half":`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	before, _ := os.ReadFile(p)

	v, err := Inspect(dir, "mix")
	require.NoError(t, err)
	n := 0
	for range v.Results() {
		n++
	}
	require.NoError(t, v.Err())
	require.NoError(t, v.Close())
	assert.Equal(t, 36, n)
	after, _ := os.ReadFile(p)
	assert.Equal(t, before, after, "Inspect changed a file")
	assert.NoFileExists(t, p+".torn")
}

func TestInspectUnknownAndDamaged(t *testing.T) {
	dir := t.TempDir()
	_, err := Inspect(dir, "none")
	require.ErrorIs(t, err, ErrNoCheckpoint)
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.NoFileExists(t, filepath.Join(dir, "none.lock"), "Inspect created a file")

	mixedCheckpoint(t, dir)
	p := filepath.Join(dir, "mix_errors.jsonl")
	b, _ := os.ReadFile(p)
	require.NoError(t, os.WriteFile(p, append([]byte("garbage\n"), b...), 0o644))
	_, err = Inspect(dir, "mix")
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "mix_errors.jsonl line 1")
}

// A batch committed but not applied: Inspect shows the new state, Open
// finishes it. Prepared files without a marker are undone by Open.
func TestFinishRenames(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprint("committed=", committed), func(t *testing.T) {
			dir := t.TempDir()
			mixedCheckpoint(t, dir)
			res := filepath.Join(dir, "mix_results.jsonl")
			line := `{"key":7,"result":"new","timestamp":"2030-01-01T00:00:00.000000+00:00"}` + "\n"
			require.NoError(t, os.WriteFile(res+rewriteSuffix, []byte(line), 0o644))
			if committed {
				b, _ := json.Marshal(renameBatch{Renames: [][2]string{{"mix_results.jsonl" + rewriteSuffix, "mix_results.jsonl"}}})
				require.NoError(t, os.WriteFile(markerPath(dir, "mix"), b, 0o644))
			}
			v, err := Inspect(dir, "mix")
			require.NoError(t, err)
			want := 36
			if committed {
				want = 1
			}
			assert.Equal(t, want, v.Info().Completed)
			v.Close()

			r, err := Open[int, string]("mix", WithDir(dir), inspectQuiet)
			require.NoError(t, err)
			done, _ := r.Progress()
			assert.Equal(t, want, done)
			require.NoError(t, r.Close())
			assert.NoFileExists(t, res+rewriteSuffix)
			assert.NoFileExists(t, markerPath(dir, "mix"))
		})
	}
}

func TestForgetRetryCompactState(t *testing.T) {
	dir := t.TempDir()
	mixedCheckpoint(t, dir)
	_, err := Forget(dir, "mix", "0", "999")
	require.ErrorIs(t, err, ErrUnknownKey)
	n, err := Forget(dir, "mix", "0", "1", "0")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = Retry(dir, "mix", func(f Failure[string]) bool { return f.Error == "regressed" })
	require.NoError(t, err)
	assert.Equal(t, 12, n)
	before, after, err := Compact(dir, "mix")
	require.NoError(t, err)
	assert.Less(t, after, before)

	r, err := Open[int, int]("mix", WithDir(dir), inspectQuiet, WithMaxAttempts(1))
	require.NoError(t, err)
	defer r.Close()
	m := r.Meta()
	assert.Equal(t, 35, m.CompletedItems)
	assert.Equal(t, 11, m.FailedItems)
	var todo []int
	for i := range r.Iterate([]int{0, 1, 3, 6, 8}, func(i int) int { return i }) {
		todo = append(todo, i)
	}
	// 0 and 1 forgotten, 3 and 8 retried; 6 failed once and is out of attempts.
	assert.Equal(t, []int{0, 1, 3, 8}, todo)
	v, err := Inspect(dir, "mix")
	require.NoError(t, err)
	defer v.Close()
	assert.Zero(t, v.Info().Results.Superseded)
	assert.Zero(t, v.Info().Errors.Superseded)
}

func ExampleInspect() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	r, _ := Open[string, string]("job", WithDir(dir), inspectQuiet)
	r.SaveResult("a", "first")
	r.SaveResult("a", "second")
	r.SaveError("b", errors.New("HTTP 503"))
	r.Close()

	v, err := Inspect(dir, "job")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer v.Close()
	in := v.Info()
	fmt.Println("completed", in.Completed, "failed", in.Failed, "superseded results", in.Results.Superseded)
	for key, result := range v.Results() {
		fmt.Println(key, string(result))
	}
	for f := range v.Failures() {
		fmt.Println(f.Key, f.Error, f.Attempts)
	}
	// Output:
	// completed 1 failed 1 superseded results 1
	// "a" "second"
	// "b" HTTP 503 1
}

// A checkpoint with no errors file (or no results file) can be changed:
// the missing journal stays missing.
func TestEditWithOneJournal(t *testing.T) {
	dir := t.TempDir()
	r, err := Open[int, int]("one", WithDir(dir), inspectQuiet)
	require.NoError(t, err)
	require.NoError(t, r.SaveResult(1, 1))
	require.NoError(t, r.SaveResult(1, 2))
	require.NoError(t, r.SaveResult(2, 2))
	require.NoError(t, r.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, "one_errors.jsonl")))

	before, after, err := Compact(dir, "one")
	require.NoError(t, err)
	assert.Less(t, after, before)
	n, err := Forget(dir, "one", "2")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.NoFileExists(t, filepath.Join(dir, "one_errors.jsonl"))
	v, err := Inspect(dir, "one")
	require.NoError(t, err)
	defer v.Close()
	assert.Equal(t, 1, v.Info().Completed)
}
