package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCmd runs the command in process and returns its exit status and
// output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// sampleDir copies the Python-written sample checkpoint to a temp folder.
func sampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"sample_results.jsonl", "sample_errors.jsonl", "sample_meta.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "checkpoints", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	return dir
}

// snapshot reads every file under dir, to check that nothing changed.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	}))
	return files
}

func TestReadingCommandsOnPythonSample(t *testing.T) {
	dir := sampleDir(t)
	before := snapshot(t, dir)
	tests := []struct {
		args []string
		want []string // substrings of stdout, in order
	}{
		{[]string{"ls"}, []string{"NAME", "COMPLETED", "sample", "4", "1", "6"}},
		{[]string{"status", "sample"}, []string{"completed    4 of 6", "failed       1", "2026-01-07 12:34:56", "running      no",
			"results      4 records, 0 superseded", "errors       3 records, 1 superseded (33%)", "hint"}},
		{[]string{"status", "sample", "--max-attempts", "2"}, []string{"failed       1 (1 out of attempts)"}},
		{[]string{"errors", "sample"}, []string{"1 failed key in 1 group", "1  timeout after Ns", "e.g. timeout after 30s", "keys 5"}},
		{[]string{"errors", "sample", "--list"}, []string{"KEY", "ATTEMPTS", "5", "2", "timeout after 30s"}},
		{[]string{"errors", "sample", "--grep", "^nothing"}, []string{"no failed keys"}},
		{[]string{"errors", "sample", "--json"}, []string{`{"key":"5","error":"timeout after 30s","attempts":2,"time":"2026-01-07T12:35:03.123575`}},
		{[]string{"results", "sample"}, []string{
			`{"key":"1","result":{"label": "ok", "score": 0.1}}` + "\n" +
				`{"key":"2","result":{"label": "caf\u00e9", "score": 0.2}}` + "\n" +
				`{"key":"4","result":{"label": "ok", "score": 0.4}}` + "\n" +
				`{"key":"3","result":{"label": "ok", "score": 0.3}}` + "\n"}},
		{[]string{"results", "sample", "--format", "csv"}, []string{"key,label,score\n1,ok,0.1\n2,café,0.2\n4,ok,0.4\n3,ok,0.3\n"}},
		{[]string{"results", "sample", "--format", "json"}, []string{`[{"key":"1"`, `{"key":"3","result":{"label": "ok", "score": 0.3}}]`}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runCmd(t, append(tc.args, "--dir", dir)...)
			require.Equal(t, 0, code, "stderr: %s", errOut)
			assert.Empty(t, errOut)
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				require.GreaterOrEqual(t, i, 0, "want %q in:\n%s", w, out)
				rest = rest[i+len(w):]
			}
		})
	}
	assert.Equal(t, before, snapshot(t, dir), "a reading command changed files")
}

func TestJSONShapes(t *testing.T) {
	dir := sampleDir(t)
	_, out, _ := runCmd(t, "ls", "--json", "--dir", dir)
	var row map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &row), out)
	for _, k := range []string{"name", "completed", "failed", "last_updated", "running"} {
		assert.Contains(t, row, k)
	}
	assert.Equal(t, "sample", row["name"])
	assert.EqualValues(t, 4, row["completed"])

	_, out, _ = runCmd(t, "status", "sample", "--json", "--dir", dir)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	for _, k := range []string{"name", "completed", "failed", "total", "started_at", "last_updated", "running"} {
		assert.Contains(t, st, k)
	}
	assert.EqualValues(t, 6, st["total"])
	assert.EqualValues(t, 1, st["failed"])
	assert.Equal(t, false, st["running"])
}

func TestErrorPattern(t *testing.T) {
	tests := []struct{ a, b string }{
		{"429 too many requests (retry after 12s)", "429 too many requests (retry after 3s)"},
		{`user "alice" not found`, `user "bob" not found`},
		{"object 5f2b9c1d3e not found", "object 0a9b8c7d6e5f not found"},
		{"req 123e4567-e89b-12d3-a456-426614174000 failed", "req 00000000-0000-0000-0000-000000000001 failed"},
		{"took 1.5s", "took 12.25s"},
	}
	for _, tc := range tests {
		assert.Equal(t, errorPattern(tc.a), errorPattern(tc.b), "%q and %q", tc.a, tc.b)
	}
	assert.NotEqual(t, errorPattern("timeout"), errorPattern("connection refused"))
	assert.Equal(t, "N too many requests (retry after Ns)", errorPattern("429 too many requests (retry after 12s)"))
}

// A checkpoint with many failures of a few kinds, written by the library.
func manyFailures(t *testing.T) string {
	dir := t.TempDir()
	r, err := checkpoint.Open[int, int]("jobs", checkpoint.WithDir(dir))
	require.NoError(t, err)
	for i := range 100 {
		switch {
		case i%10 == 0:
			require.NoError(t, r.SaveError(i, fmt.Errorf("HTTP 503 for id %x", 0xabcdef00+int64(i))))
		case i%3 == 0:
			require.NoError(t, r.SaveError(i, fmt.Errorf("429 too many requests (retry after %ds)", i%17)))
		default:
			require.NoError(t, r.SaveResult(i, map[string]any{"n": i, "tags": []string{"a"}}))
		}
	}
	require.NoError(t, r.Close())
	return dir
}

func TestErrorsGroupsMostFrequentFirst(t *testing.T) {
	dir := manyFailures(t)
	code, out, errOut := runCmd(t, "errors", "jobs", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	i429 := strings.Index(out, "30  N too many requests (retry after Ns)")
	i503 := strings.Index(out, "10  HTTP N for id <id>")
	require.True(t, i429 >= 0 && i503 > i429, out)
	assert.Contains(t, out, "keys 3, 6, 9 and 27 more")

	code, out, _ = runCmd(t, "results", "jobs", "--format", "csv", "--dir", dir)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Equal(t, "key,n,tags", lines[0])
	assert.Equal(t, `1,1,"[""a""]"`, lines[1])
	assert.Len(t, lines, 1+60)
}

func TestChangingCommands(t *testing.T) {
	t.Run("compact", func(t *testing.T) {
		dir := sampleDir(t)
		code, out, errOut := runCmd(t, "compact", "sample", "--dir", dir)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "compact: sample: 665 B before, 567 B after (15% smaller)")
		b, _ := os.ReadFile(filepath.Join(dir, "sample_errors.jsonl"))
		// Python's lines are kept as written; key 3's error went with its success.
		assert.Equal(t, `{"key": "5", "error": "timeout after 30s", "timestamp": "2026-01-07T12:35:01.123541"}
{"key": "5", "error": "timeout after 30s", "timestamp": "2026-01-07T12:35:03.123575"}
`, string(b))
		_, out, _ = runCmd(t, "status", "sample", "--dir", dir)
		assert.Contains(t, out, "errors       2 records, 0 superseded")
		assert.Contains(t, out, "2026-01-07 12:35:03", "compact keeps the last update")
	})
	t.Run("retry", func(t *testing.T) {
		dir := sampleDir(t)
		code, out, errOut := runCmd(t, "retry", "sample", "5", "--dir", dir)
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, "retry: 1 key of sample eligible again (the next run does them)\n", out)
		r, err := checkpoint.Open[int, int]("sample", checkpoint.WithDir(dir), checkpoint.WithMaxAttempts(1))
		require.NoError(t, err)
		var todo []int
		for it := range r.Iterate([]int{1, 2, 3, 4, 5, 6}, func(i int) int { return i }) {
			todo = append(todo, it)
		}
		assert.Equal(t, []int{5, 6}, todo, "5 is eligible again though it had used its attempt")
		assert.Empty(t, r.AllErrors())
		require.NoError(t, r.Close())
	})
	t.Run("retry --grep", func(t *testing.T) {
		dir := manyFailures(t)
		code, out, _ := runCmd(t, "retry", "jobs", "--grep", "^429", "--dir", dir)
		require.Equal(t, 0, code)
		assert.Contains(t, out, "30 keys")
		_, out, _ = runCmd(t, "errors", "jobs", "--dir", dir)
		assert.Contains(t, out, "10 failed keys in 1 group")
		code, out, _ = runCmd(t, "retry", "jobs", "--all", "--dir", dir)
		require.Equal(t, 0, code)
		assert.Contains(t, out, "10 keys")
	})
	t.Run("forget", func(t *testing.T) {
		dir := sampleDir(t)
		code, out, errOut := runCmd(t, "forget", "sample", "3", "5", "--dir", dir)
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, "forget: removed the outcomes of 2 keys of sample\n", out)
		_, out, _ = runCmd(t, "status", "sample", "--json", "--dir", dir)
		assert.Contains(t, out, `"completed":3,"failed":0`)
		for _, f := range []string{"sample_results.jsonl", "sample_errors.jsonl"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			assert.NotContains(t, string(b), `"key": "3"`, "absent, not tombstoned")
			assert.NotContains(t, string(b), `"key": "5"`)
		}
	})
	t.Run("reset", func(t *testing.T) {
		dir := sampleDir(t)
		before := snapshot(t, dir)
		code, out, errOut := runCmd(t, "reset", "sample", "--dir", dir)
		require.Equal(t, 0, code, errOut)
		bak := strings.TrimSpace(strings.TrimPrefix(out, "reset: moved the files of sample to "))
		require.DirExists(t, bak)
		for p, content := range before {
			b, err := os.ReadFile(filepath.Join(bak, filepath.Base(p)))
			require.NoError(t, err)
			assert.Equal(t, content, string(b))
		}
		code, _, errOut = runCmd(t, "status", "sample", "--dir", dir)
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, `no checkpoint "sample"`)

		dir = sampleDir(t)
		code, out, _ = runCmd(t, "reset", "sample", "--no-backup", "--dir", dir)
		require.Equal(t, 0, code)
		assert.Equal(t, "reset: deleted the files of sample\n", out)
		left, _ := filepath.Glob(filepath.Join(dir, "sample_*"))
		assert.Empty(t, left)
	})
}

func TestBadInput(t *testing.T) {
	damaged := func(t *testing.T) string {
		dir := sampleDir(t)
		p := filepath.Join(dir, "sample_results.jsonl")
		b, _ := os.ReadFile(p)
		lines := strings.SplitAfter(string(b), "\n")
		lines[1] = "{\"key\": \"2\", \"resu\n" // damage in the middle
		require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644))
		return dir
	}
	tests := []struct {
		name    string
		dir     func(*testing.T) string
		args    []string
		code    int
		message string
	}{
		{"unknown name", sampleDir, []string{"status", "nope"}, 1, `no checkpoint "nope" in`},
		{"unknown name results", sampleDir, []string{"results", "nope"}, 1, `no checkpoint "nope"`},
		{"unknown name compact", sampleDir, []string{"compact", "nope"}, 1, `"nope"`},
		{"bad name", sampleDir, []string{"status", "../x"}, 1, "path separator"},
		{"bad regex", sampleDir, []string{"errors", "sample", "--grep", "("}, 2, "--grep: error parsing regexp"},
		{"bad regex retry", sampleDir, []string{"retry", "sample", "--grep", "[z-a]"}, 2, "--grep"},
		{"bad format", sampleDir, []string{"results", "sample", "--format", "xml"}, 2, `--format "xml"`},
		{"unknown flag", sampleDir, []string{"ls", "--nope"}, 2, "unknown flag"},
		{"missing name", sampleDir, []string{"status"}, 2, "accepts 1 arg"},
		{"retry nothing", sampleDir, []string{"retry", "sample"}, 2, "name keys, or use --all or --grep"},
		{"retry completed key", sampleDir, []string{"retry", "sample", "3"}, 1, `not a failed key of sample: "3"`},
		{"forget unknown key", sampleDir, []string{"forget", "sample", "5", "99"}, 1, `no outcome for key "99" in "sample"`},
		// The sample's keys are integers written as strings: "abc" is none of them.
		{"key of the wrong type", sampleDir, []string{"forget", "sample", "abc"}, 1, `"abc" in "sample" (its keys look like "3", "5", "1")`},
		{"damaged line status", damaged, []string{"status", "sample"}, 1, "sample_results.jsonl line 2 is not a record"},
		{"damaged line results", damaged, []string{"results", "sample"}, 1, "sample_results.jsonl line 2"},
		{"damaged line compact", damaged, []string{"compact", "sample"}, 1, "sample_results.jsonl line 2"},
		{"damaged line forget", damaged, []string{"forget", "sample", "1"}, 1, "sample_results.jsonl line 2"},
		{"no folder", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, []string{"ls"}, 1, "no folder"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			before := snapshot(t, filepath.Dir(dir))
			code, out, errOut := runCmd(t, append(tc.args, "--dir", dir)...)
			assert.Equal(t, tc.code, code, "stdout %s stderr %s", out, errOut)
			assert.Contains(t, errOut, tc.message)
			assert.Empty(t, out)
			after := snapshot(t, filepath.Dir(dir))
			for p := range after {
				if strings.HasSuffix(p, ".lock") {
					delete(after, p) // the lock file a changing command took
				}
			}
			assert.Equal(t, before, after, "bad input changed files")
		})
	}
}

// TestHelperHoldLock is the child of TestHeldByRunningJob: it opens the
// checkpoint, saves one more result, says so and holds it until its stdin
// closes.
func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv("CHECKPOINT_HOLD_DIR")
	if dir == "" {
		t.Skip("only run as the child of TestHeldByRunningJob")
	}
	r, err := checkpoint.Open[string, json.RawMessage]("sample", checkpoint.WithDir(dir))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	r.SaveResult("6", map[string]any{"label": "held"})
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	r.Close()
	os.Exit(0)
}

func TestHeldByRunningJob(t *testing.T) {
	dir := sampleDir(t)
	defer holdInChild(t, "TestHelperHoldLock", "CHECKPOINT_HOLD_DIR", dir)()
	before := snapshot(t, dir)

	// Reading commands work and see the job.
	code, out, errOut := runCmd(t, "ls", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "running")
	code, out, _ = runCmd(t, "status", "sample", "--json", "--dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, out, `"completed":5`)
	assert.Contains(t, out, `"running":true`)
	code, out, _ = runCmd(t, "results", "sample", "--dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, out, `{"key":"6","result":{"label":"held"}}`)

	// Changing commands refuse at once.
	for _, args := range [][]string{{"compact", "sample"}, {"retry", "sample", "--all"}, {"forget", "sample", "1"}, {"reset", "sample"}} {
		start := time.Now()
		code, out, errOut := runCmd(t, append(args, "--dir", dir)...)
		assert.Equal(t, 1, code, args)
		assert.Empty(t, out)
		assert.Contains(t, errOut, `"sample" in `+dir+` is held by a running job`, args)
		assert.Less(t, time.Since(start), 5*time.Second)
	}
	assert.Equal(t, before, snapshot(t, dir), "a refused command changed files")
}

func TestHelpHasExamples(t *testing.T) {
	root := newRootCmd(&env{})
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		assert.NotEmpty(t, c.Example, "%s --help has no example", c.Name())
	}
	code, out, _ := runCmd(t, "status", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "Examples:")
}

// TestHelperSlowJob is the child of TestWatchFollowsAJob: a job of 40 items
// that saves one every 10ms, every eighth a failure, then closes.
func TestHelperSlowJob(t *testing.T) {
	dir := os.Getenv("CHECKPOINT_SLOW_DIR")
	if dir == "" {
		t.Skip("only run as the child of TestWatchFollowsAJob")
	}
	r, err := checkpoint.Open[int, int]("slow", checkpoint.WithDir(dir))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	items := make([]int, 40)
	for i := range items {
		items[i] = i
	}
	fmt.Println("opened")
	// Wait for the test's go-ahead: watch has read the checkpoint as it
	// was, so every failure below is news to it.
	bufio.NewReader(os.Stdin).ReadString('\n')
	for it := range r.Iterate(items, func(i int) int { return i }) {
		time.Sleep(10 * time.Millisecond)
		if it%8 == 7 {
			r.SaveError(it, fmt.Errorf("HTTP 503 on item %d", it))
			continue
		}
		r.SaveResult(it, it)
	}
	r.Close()
	os.Exit(0)
}

func TestWatchFollowsAJob(t *testing.T) {
	dir := t.TempDir()
	// A first save, so that the checkpoint exists before watch starts.
	r, err := checkpoint.Open[int, int]("slow", checkpoint.WithDir(dir))
	require.NoError(t, err)
	require.NoError(t, r.SaveResult(0, 0))
	require.NoError(t, r.Close())

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSlowJob$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_SLOW_DIR="+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Wait()
	defer stdin.Close() // lets the job go on if the test fails early
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "opened\n", line)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &lockedBuffer{}
	var errb bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"watch", "slow", "--every", "100ms", "--dir", dir}, out, &errb) }()
	// The job starts once watch has shown the checkpoint as it was.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "slow: resumed"); {
		require.True(t, time.Now().Before(deadline), "watch printed no first line: %q", out.String())
		time.Sleep(5 * time.Millisecond)
	}
	_, err = io.WriteString(stdin, "go\n")
	require.NoError(t, err)
	require.Equal(t, 0, <-code, errb.String())
	require.NoError(t, ctx.Err(), "watch did not end when the job did")
	text := out.String()
	assert.Contains(t, text, "slow: resumed")
	for _, item := range []int{7, 15, 23, 31, 39} {
		assert.Contains(t, text, fmt.Sprintf("failed %d (attempt 1): HTTP 503 on item %d\n", item, item))
	}
	assert.Regexp(t, `slow: \d+ done, \d+ failed|slow: \d+/40 \(\d+%\), \d+ failed`, text, "a progress line while the job ran")
	assert.Contains(t, text, "slow: finished 40/40")
	assert.Contains(t, text, "5 failed")
}

// lockedBuffer is a bytes.Buffer that a test may read while a command writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
