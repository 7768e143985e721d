package checkpoint

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func resultLine(key, result string) string {
	return fmt.Sprintf(`{"key": %q, "result": %s, "timestamp": "2026-11-23T13:47:51.518145"}`+"\n", key, result)
}

// TestMidFileCorruption: a damaged line that is not the last one makes Open
// fail with an error naming the file and the line; WithSkipCorrupt opens
// anyway, logs each skipped line and keeps its bytes in a side file.
func TestMidFileCorruption(t *testing.T) {
	good := func(i int) string { return resultLine(fmt.Sprintf("k%d", i), fmt.Sprintf(`{"n": %d}`, i)) }
	nulBlock := strings.Repeat("\x00", 4096)
	cases := []struct {
		name    string
		damaged []string // the damaged lines, with their newlines
		keys    []string // good keys expected after skipping
	}{
		{"a line of garbage", []string{"#### not json ####\n"}, []string{"k0", "k1", "k3", "k4"}},
		{"a NUL block", []string{nulBlock + "\n"}, []string{"k0", "k1", "k3", "k4"}},
		{"a NUL block that swallowed a line's start", []string{nulBlock + `esult": {"n": 2}, "timestamp": "2026-11-23T13:47:51"}` + "\n"},
			[]string{"k0", "k1", "k3", "k4"}},
		{"a line cut short", []string{`{"key": "k2", "result": {"n": 2, "timestamp": "x"}` + "\n"}, []string{"k0", "k1", "k3", "k4"}},
		{"two damaged lines", []string{"garbage\n", `{"key": "k2", "res` + "\n"}, []string{"k0", "k1", "k3", "k4"}},
	}
	for _, tc := range cases {
		for _, journal := range []string{"_results.jsonl", "_errors.jsonl"} {
			t.Run(tc.name+"/"+journal, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "job"+journal)
				var content bytes.Buffer
				line := good
				if journal == "_errors.jsonl" {
					line = func(i int) string {
						return fmt.Sprintf(`{"key": "k%d", "error": "boom %d", "timestamp": "2026-11-23T13:47:51.518145"}`+"\n", i, i)
					}
				}
				content.WriteString(line(0) + line(1))
				for _, d := range tc.damaged {
					content.WriteString(d)
				}
				content.WriteString(line(3) + line(4))
				require.NoError(t, os.WriteFile(path, content.Bytes(), 0o644))

				_, err := Open[string, int]("job", WithDir(dir), WithLogger(quietLogger()))
				require.ErrorIs(t, err, ErrCorrupt)
				assert.Contains(t, err.Error(), path)
				assert.Contains(t, err.Error(), "line 3")
				after, rerr := os.ReadFile(path)
				require.NoError(t, rerr)
				require.Equal(t, content.Bytes(), after, "a refused Open changes nothing")

				var logs bytes.Buffer
				r, err := Open[string, int]("job", WithDir(dir), WithSkipCorrupt(),
					WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
				require.NoError(t, err)
				if journal == "_results.jsonl" {
					for _, k := range tc.keys {
						var got map[string]int
						found, err := r.Result(k, &got)
						require.NoError(t, err)
						require.True(t, found, k)
						assert.Equal(t, int(k[1]-'0'), got["n"])
					}
				} else {
					var keys []string
					for _, f := range r.AllErrors() {
						keys = append(keys, f.Key)
					}
					assert.ElementsMatch(t, tc.keys, keys)
				}
				assert.Equal(t, len(tc.damaged), strings.Count(logs.String(), "skipped a corrupt line"), logs.String())
				assert.Contains(t, logs.String(), "line=3")

				// Nothing destroyed: the side file holds the damaged lines
				// byte for byte, and the journal kept its size.
				side, err := os.ReadFile(path + ".corrupt")
				require.NoError(t, err)
				assert.Equal(t, strings.Join(tc.damaged, ""), string(side))
				now, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Len(t, now, content.Len())

				// The runner works on, and later runs open without the option.
				require.NoError(t, r.SaveResult("k9", map[string]int{"n": 9}))
				require.NoError(t, r.Close())
				r, err = Open[string, int]("job", WithDir(dir), WithLogger(quietLogger()))
				require.NoError(t, err, "the damaged lines were set aside")
				assert.True(t, r.IsCompleted("k9"))
				require.NoError(t, r.Close())
				side2, err := os.ReadFile(path + ".corrupt")
				require.NoError(t, err)
				assert.Equal(t, side, side2, "lines are set aside once")
			})
		}
	}
}

// TestTornTailThatLooksFramed is a record cut short right after a nested
// object whose last field is "timestamp": its framing looks whole. Before
// the fix, Open kept it as a completed key with a truncated result, so the
// item was never redone and its result was unreadable.
func TestTornTailThatLooksFramed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job_results.jsonl")
	whole := resultLine("a", `{"n": 1}`)
	torn := `{"key": "b", "result": {"meta": {"timestamp": "x"}, "data": {"note": "y", "timestamp": "z"}` // ...}, "timestamp": "..."}
	require.NoError(t, os.WriteFile(path, []byte(whole+torn), 0o644))

	r, err := Open[string, int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	defer r.Close()
	assert.True(t, r.IsCompleted("a"))
	assert.False(t, r.IsCompleted("b"), "a record cut short must not count as saved")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, whole, string(b))
	side, err := os.ReadFile(path + ".torn")
	require.NoError(t, err)
	assert.Equal(t, torn+"\n", string(side))
}

// TestWholeTailKept: a last line that is a whole record without its newline
// (the write of the newline is all that was lost) is kept.
func TestWholeTailKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job_results.jsonl")
	last := strings.TrimSuffix(resultLine("b", `{"n": 2}`), "\n")
	require.NoError(t, os.WriteFile(path, []byte(resultLine("a", `{"n": 1}`)+last), 0o644))
	r, err := Open[string, int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	defer r.Close()
	assert.True(t, r.IsCompleted("b"))
	checkJournalLines(t, path)
}

// TestStaleMetaTempsRemoved: a run killed while writing the meta file leaves
// its temporary file behind; the next Open removes it, so kills do not pile
// files up in the folder. Others' files are left alone.
func TestStaleMetaTempsRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "job_meta.json.tmp-12345")
	other := filepath.Join(dir, "other_meta.json.tmp-12345")
	require.NoError(t, os.WriteFile(stale, []byte(`{"experiment_na`), 0o600))
	require.NoError(t, os.WriteFile(other, []byte(`{}`), 0o600))
	r, err := Open[string, int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	require.NoError(t, r.Close())
	assert.NoFileExists(t, stale)
	assert.FileExists(t, other, "another checkpoint's file")
}

// TestClearRemovesSideFiles: Clear and WithFresh delete the side files too.
func TestClearRemovesSideFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job_results.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(resultLine("a", "1")+"garbage\n"+resultLine("b", "2")+`{"key": "c", "res`), 0o644))
	r, err := Open[string, int]("job", WithDir(dir), WithSkipCorrupt(), WithLogger(quietLogger()))
	require.NoError(t, err)
	assert.FileExists(t, path+".corrupt")
	assert.FileExists(t, path+".torn")
	require.NoError(t, r.Clear())
	assert.NoFileExists(t, path+".corrupt")
	assert.NoFileExists(t, path+".torn")
	require.NoError(t, r.Close())
}
