package checkpoint_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/checkpoint-go/checkpoint"
)

func TestTornTailIsRepaired(t *testing.T) {
	for _, file := range []string{"job_results.jsonl", "job_errors.jsonl"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			r := open[int](t, dir)
			require.NoError(t, r.SaveResult(1, "one"))
			require.NoError(t, r.SaveError(2, fmt.Errorf("two")))
			require.NoError(t, r.Close())
			path := filepath.Join(dir, file)
			good := scanFile(t, path)
			torn := `{"key":3,"result":{"long":"cut he`
			appendFile(t, path, torn)

			var log strings.Builder
			r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir),
				checkpoint.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
			require.NoError(t, err)
			assert.Contains(t, log.String(), "torn")
			assert.Contains(t, log.String(), file)

			assert.True(t, r.IsCompleted(1))
			assert.Len(t, r.AllErrors(), 1)
			assert.Equal(t, good, scanFile(t, path), "the good lines stay, the partial bytes go")
			side, err := os.ReadFile(path + ".torn")
			require.NoError(t, err)
			assert.Equal(t, torn+"\n", string(side), "what was cut is kept beside the file")

			// New records are not glued to the cut line.
			require.NoError(t, r.SaveResult(3, "three"))
			require.NoError(t, r.SaveError(4, fmt.Errorf("four")))
			require.NoError(t, r.Close())
			readLines(t, filepath.Join(dir, "job_results.jsonl"))
			readLines(t, filepath.Join(dir, "job_errors.jsonl"))

			// Reopening twice changes nothing.
			before := scanFile(t, path)
			for range 2 {
				r = open[int](t, dir)
				assert.True(t, r.IsCompleted(3))
				require.NoError(t, r.Close())
				assert.Equal(t, before, scanFile(t, path))
			}
		})
	}
}

func TestCorruptLineInTheMiddle(t *testing.T) {
	tests := []struct {
		name string
		bad  string
	}{
		{"garbage", "this is not json"},
		{"NUL block", strings.Repeat("\x00", 4096)},
		{"line cut short", `{"key":9,"result":{"a":1`},
		{"JSON without a key", `{"result":1,"timestamp":"2026-01-01T00:00:00"}`},
		{"JSON that is not an object", `[1,2,3]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "job_results.jsonl")
			content := `{"key":1,"result":1,"timestamp":"2026-01-01T00:00:00.000000+00:00"}` + "\n" +
				tc.bad + "\n" +
				`{"key":2,"result":2,"timestamp":"2026-01-01T00:00:01.000000+00:00"}` + "\n"
			require.NoError(t, os.WriteFile(path, []byte(content), 0o644))

			_, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet)
			require.ErrorIs(t, err, checkpoint.ErrCorrupt)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "line 2")

			data, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			assert.Equal(t, content, string(data), "nothing is changed or dropped")

			// The lock was released: once fixed, the checkpoint opens.
			require.NoError(t, os.WriteFile(path, []byte(strings.Replace(content, tc.bad+"\n", "", 1)), 0o644))
			r := open[int](t, dir)
			assert.True(t, r.IsCompleted(2))
		})
	}
}

// The child half of TestSurvivesSIGKILL: save results as fast as possible,
// printing each key once SaveResult has returned.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CHECKPOINT_TEST_CHILD_DIR"); dir != "" {
		runChild(dir)
		return
	}
	os.Exit(m.Run())
}

func runChild(dir string) {
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	items := make([]int, 1_000_000)
	for i := range items {
		items[i] = i
	}
	out := bufio.NewWriter(os.Stdout)
	for item := range r.Iterate(items, func(i int) int { return i }) {
		// Big enough results that a kill often lands mid-write.
		if err := r.SaveResult(item, strings.Repeat(strconv.Itoa(item), 500)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(out, item)
		out.Flush()
	}
	r.Close()
}

// TestSurvivesSIGKILL kills a process that is saving results and checks
// that every result it reported as saved is there, intact, after a restart.
// The kill -9 harness of the durability suite does this at scale.
func TestSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	reported := map[int]bool{}
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CHECKPOINT_TEST_CHILD_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		for n := 0; n < 200*(round+1) && sc.Scan(); n++ {
			k, err := strconv.Atoi(sc.Text())
			require.NoError(t, err)
			reported[k] = true
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		for sc.Scan() { // keys saved before the kill landed
			if k, err := strconv.Atoi(sc.Text()); err == nil {
				reported[k] = true
			}
		}
		cmd.Wait()

		r := open[int](t, dir)
		for k := range reported {
			var got string
			found, err := r.Result(k, &got)
			require.NoError(t, err)
			require.True(t, found, "round %d: key %d was reported saved but is missing", round, k)
			require.Equal(t, strings.Repeat(strconv.Itoa(k), 500), got)
		}
		require.NoError(t, r.Close())
		readLines(t, filepath.Join(dir, "job_results.jsonl"))
	}
	assert.GreaterOrEqual(t, len(reported), 3000)
}

// TestDamagedEndIsRepaired: bad lines with nothing good after them (a power
// cut can zero the last blocks, newline or not) are a damaged end: cut and
// kept aside like a torn tail, not refused.
func TestDamagedEndIsRepaired(t *testing.T) {
	tests := []struct {
		name string
		tail string
	}{
		{"NUL bytes over the start of the last line", strings.Repeat("\x00", 40) + `,"timestamp":"2026-01-01T00:00:00"}` + "\n"},
		{"a NUL block with newlines", strings.Repeat("\x00", 100) + "\n" + strings.Repeat("\x00", 100) + "\n"},
		{"garbage lines then a torn one", "garbage\nmore garbage\n{\"key\":3,\"res"},
		{"a garbage line then blank lines", "garbage\n\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := open[int](t, dir)
			require.NoError(t, r.SaveResult(1, "one"))
			require.NoError(t, r.SaveResult(2, "two"))
			require.NoError(t, r.Close())
			path := filepath.Join(dir, "job_results.jsonl")
			good := scanFile(t, path)
			appendFile(t, path, tc.tail)

			r = open[int](t, dir)
			assert.True(t, r.IsCompleted(1))
			assert.True(t, r.IsCompleted(2))
			assert.Equal(t, good, scanFile(t, path))
			side, err := os.ReadFile(path + ".torn")
			require.NoError(t, err)
			assert.Contains(t, string(side), strings.TrimSuffix(tc.tail, "\n"), "what was cut is kept")
			require.NoError(t, r.SaveResult(3, "three"))
			require.NoError(t, r.Close())
			readLines(t, path)
		})
	}

	t.Run("damage followed by a good record is refused", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "job_results.jsonl")
		content := "garbage\n" + `{"key":2,"result":2,"timestamp":"2026-01-01T00:00:01.000000+00:00"}`
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
		_, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), quiet)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		assert.Contains(t, err.Error(), "line 1")
		data, _ := os.ReadFile(path)
		assert.Equal(t, content, string(data))
	})
}
