// pgtest starts Postgres as another user (syscall.Credential), which
// Windows does not have; the code under test builds and is vetted there.

//go:build !windows

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/checkpoint-go/checkpoint/postgres"
	"github.com/checkpoint-go/checkpoint/postgres/pgtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Checkpoints in Postgres, through the command: export, import, and the
// reading commands and serve on a connection string. A throwaway cluster
// (postgres/pgtest) is started by the first test that needs it and stopped
// by TestMain. Without Postgres these tests skip, except under CI=true,
// where they fail.

var pg struct {
	once    sync.Once
	cluster *pgtest.Cluster
	err     error
	dbs     int
	mu      sync.Mutex
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.cluster != nil {
		if err := pg.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// newDB returns the URL of a new, empty database, with a password in it
// that the cluster ignores (trust authentication) and no output may show.
func newDB(t *testing.T) string {
	t.Helper()
	pg.once.Do(func() { pg.cluster, pg.err = pgtest.Start() })
	if pg.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and no Postgres for the tests: %v", pg.err)
		}
		t.Skipf("no Postgres to test with (set CI=true to make this fail): %v", pg.err)
	}
	pg.mu.Lock()
	pg.dbs++
	name := fmt.Sprintf("cmd%d", pg.dbs)
	pg.mu.Unlock()
	u, err := pg.cluster.CreateDB(name)
	require.NoError(t, err)
	return strings.Replace(u, "postgres://postgres@", "postgres://postgres:"+secret+"@", 1)
}

const secret = "hunter2-s3cret"

// noSecret fails if any output shows the password.
func noSecret(t *testing.T, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, secret) || strings.Contains(o, url.QueryEscape(secret)) {
			t.Fatalf("output shows the password:\n%s", o)
		}
	}
}

// importSample loads the Python-written sample into a new database.
func importSample(t *testing.T, extra ...string) string {
	t.Helper()
	db := newDB(t)
	args := append([]string{"import", "sample", "--dir", filepath.Join("..", "..", "checkpoints"), "--db", db}, extra...)
	code, out, errOut := runCmd(t, args...)
	require.Equal(t, 0, code, "import: %s %s", out, errOut)
	noSecret(t, out, errOut)
	return db
}

// The Python sample goes into Postgres and comes back out as files that
// read the same as the originals: a job moves from one machine to many and
// back.
func TestPostgresImportExport(t *testing.T) {
	db := importSample(t)
	code, out, errOut := runCmd(t, "import", "sample", "--dir", filepath.Join("..", "..", "checkpoints"), "--db", db, "--json")
	require.Equal(t, 0, code, errOut)
	var im map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &im))
	assert.Equal(t, map[string]any{"name": "sample", "lines": 7.0, "completed": 4.0, "failed": 1.0}, im)

	dst := filepath.Join(t.TempDir(), "out")
	code, out, errOut = runCmd(t, "export", "sample", "--db", db, "--dir", dst)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "4 results, 1 failed key")
	assert.Contains(t, out, "postgres://postgres:xxxxx@")
	noSecret(t, out, errOut)

	// The export reads as the original does, in the library.
	want := readCheckpoint(t, sampleDir(t))
	got := readCheckpoint(t, dst)
	assert.Equal(t, want, got)

	// Never over existing files.
	code, _, errOut = runCmd(t, "export", "sample", "--db", db, "--dir", dst)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "exists")

	// The database from the environment, and numbers for keys.
	db2 := newDB(t)
	t.Setenv(dbEnv, db2)
	code, _, errOut = runCmd(t, "import", "sample", "--number-keys", "--dir", sampleDir(t))
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCmd(t, "import", "sample", "--dir", t.TempDir())
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no sample_results.jsonl")
	code, out, _ = runCmd(t, "results", "sample", "--db", db2)
	require.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, `{"key":1,"result":`), out)
}

// readCheckpoint is what the library reads in a folder: latest results,
// and failures with their attempts.
func readCheckpoint(t *testing.T, dir string) map[string]string {
	t.Helper()
	v, err := checkpoint.Inspect(dir, "sample")
	require.NoError(t, err)
	defer v.Close()
	m := map[string]string{}
	for k, r := range v.Results() {
		var c strings.Builder
		json.NewEncoder(&c).Encode(json.RawMessage(r))
		m[k] = "result " + strings.TrimSpace(c.String())
	}
	for f := range v.Failures() {
		m[f.Key] = fmt.Sprintf("failed %d times: %s at %s", f.Attempts, f.Error, f.Time.UTC().Format(time.RFC3339Nano))
	}
	require.NoError(t, v.Err())
	return m
}

// writeMany writes the checkpoint "many" of a Go runner: results, keys
// that failed several times, keys that failed then succeeded, a result
// replaced, in an order that is neither the keys' nor their first save's.
func writeMany(t *testing.T, dir string) {
	t.Helper()
	r, err := checkpoint.Open[string, map[string]any]("many", checkpoint.WithDir(dir),
		checkpoint.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	for i := range 40 {
		key := fmt.Sprintf("k%02d", (i*7)%23)
		switch i % 5 {
		case 0, 3:
			require.NoError(t, r.SaveError(key, fmt.Errorf("HTTP %d from host-%d (attempt %d)", 500+i%3, i%4, i)))
		default:
			require.NoError(t, r.SaveResult(key, map[string]any{"i": i, "label": fmt.Sprint("L", i%3)}))
		}
		time.Sleep(2 * time.Millisecond) // distinct timestamps: the order is the files'
	}
	require.NoError(t, r.Close())
}

// Each reading command answers the same on the database as on the folder
// it was imported from, with --dir URL and with --db URL.
func TestPostgresReadingCommands(t *testing.T) {
	db := importSample(t)
	folder := sampleDir(t)
	writeMany(t, folder)
	code, _, errOut := runCmd(t, "import", "many", "--dir", folder, "--db", db)
	require.Equal(t, 0, code, errOut)
	// "wide": more results than the driver's read buffer holds, which the
	// CSV writer keeps for its header. Keys sort in the order they were
	// saved, so that results saved in the same microsecond keep it.
	w, err := checkpoint.Open[string, map[string]any]("wide", checkpoint.WithDir(folder),
		checkpoint.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	for i := range 3000 {
		require.NoError(t, w.SaveResult(fmt.Sprintf("w%05d", i), map[string]any{"i": i, "text": strings.Repeat(fmt.Sprint(i%10), 80)}))
	}
	require.NoError(t, w.Close())
	code, _, errOut = runCmd(t, "import", "wide", "--dir", folder, "--db", db)
	require.Equal(t, 0, code, errOut)
	for _, args := range [][]string{
		{"results", "sample"},
		{"results", "sample", "--format", "json"},
		{"results", "sample", "--format", "csv"},
		{"errors", "sample"},
		{"errors", "sample", "--list", "--grep", "timeout"},
		{"results", "many"},
		{"results", "many", "--format", "csv"},
		{"errors", "many"},
		{"errors", "many", "--list"},
		{"errors", "many", "--list", "--grep", "host-[12]"},
		{"results", "wide", "--format", "csv"},
		{"results", "wide", "--format", "json"},
	} {
		for _, place := range [][]string{{"--dir", db}, {"--db", db}} {
			t.Run(strings.Join(append(args, place[0]), " "), func(t *testing.T) {
				code, want, _ := runCmd(t, append(args, "--dir", folder)...)
				require.Equal(t, 0, code)
				code, got, errOut := runCmd(t, append(args, place...)...)
				require.Equal(t, 0, code, errOut)
				noSecret(t, got, errOut)
				assert.Equal(t, want, got)
			})
		}
	}

	t.Run("errors --json", func(t *testing.T) {
		type failure struct {
			Key      json.RawMessage `json:"key"`
			Error    string          `json:"error"`
			Attempts int             `json:"attempts"`
			Time     time.Time       `json:"time"`
		}
		decode := func(out string) []failure {
			var fs []failure
			for line := range strings.Lines(out) {
				var f failure
				require.NoError(t, json.Unmarshal([]byte(line), &f))
				fs = append(fs, f)
			}
			return fs
		}
		for _, name := range []string{"sample", "many"} {
			_, want, _ := runCmd(t, "errors", name, "--json", "--dir", folder)
			code, got, errOut := runCmd(t, "errors", name, "--json", "--dir", db)
			require.Equal(t, 0, code, errOut)
			w, g := decode(want), decode(got)
			require.Len(t, g, len(w))
			require.NotEmpty(t, w)
			for i := range w {
				assert.Equal(t, string(w[i].Key), string(g[i].Key))
				assert.Equal(t, w[i].Error, g[i].Error)
				assert.Equal(t, w[i].Attempts, g[i].Attempts)
				assert.True(t, w[i].Time.Equal(g[i].Time), "%v != %v", w[i].Time, g[i].Time)
			}
		}
	})

	t.Run("ls", func(t *testing.T) {
		code, out, errOut := runCmd(t, "ls", "--json", "--dir", db)
		require.Equal(t, 0, code, errOut)
		var row map[string]any
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 3, out)
		require.NoError(t, json.Unmarshal([]byte(lines[1]), &row)) // many, sample, wide
		assert.Equal(t, "sample", row["name"])
		assert.Equal(t, 4.0, row["completed"])
		assert.Equal(t, 1.0, row["failed"])
		assert.Equal(t, false, row["running"])
		assert.Positive(t, row["size"])
		last, _ := time.Parse(time.RFC3339Nano, row["last_updated"].(string))
		assert.Equal(t, "2026-01-07 12:35:03.123575", last.Local().Format("2006-01-02 15:04:05.999999"))
		code, out, errOut = runCmd(t, "ls", "--db", db)
		require.Equal(t, 0, code, errOut)
		assert.Regexp(t, `(?m)^sample +checkpoint +4 +1 +- +2026-01-07`, out)
		noSecret(t, out, errOut)
	})

	t.Run("status", func(t *testing.T) {
		code, out, errOut := runCmd(t, "status", "sample", "--json", "--max-attempts", "2", "--dir", db)
		require.Equal(t, 0, code, errOut)
		var s statusOut
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		assert.Equal(t, int64(4), s.Completed)
		assert.Equal(t, int64(1), s.Failed)
		require.NotNil(t, s.OutOfAttempts)
		assert.Equal(t, 1, *s.OutOfAttempts)
		assert.False(t, s.Running)
		code, out, errOut = runCmd(t, "status", "sample", "--db", db)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "sample (in postgres://postgres:xxxxx@127.0.0.1:")
		assert.Contains(t, out, "completed    4")
		noSecret(t, out, errOut)
	})

	t.Run("unknown name", func(t *testing.T) {
		for _, cmd := range []string{"status", "errors", "results"} {
			code, out, errOut := runCmd(t, cmd, "nope", "--dir", db)
			assert.Equal(t, 1, code, cmd)
			assert.Contains(t, errOut, `no checkpoint "nope" in postgres://postgres:xxxxx@`, cmd)
			noSecret(t, out, errOut)
		}
	})
}

// statusOut is status --json on a database, as a script reads it.
type statusOut struct {
	Completed, Failed, Leased int64
	OutOfAttempts             *int `json:"out_of_attempts"`
	Running                   bool
	InFlight                  []json.RawMessage `json:"in_flight"`
	StartedAt                 time.Time         `json:"started_at"`
}

// A job running on Postgres shows as running, with the keys in its hands.
func TestPostgresStatusOfRunningJob(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := postgres.Open(ctx, db, postgres.WithLogger(quiet))
	require.NoError(t, err)
	defer store.Close()
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithBackend(store), checkpoint.WithLogger(quiet), checkpoint.WithLease(time.Minute))
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.SaveResult(100, 1))
	checked := false
	for i := range r.Iterate([]int{1, 2, 3}, func(i int) int { return i }) {
		if i != 2 {
			continue
		}
		code, out, errOut := runCmd(t, "status", "job", "--json", "--db", db)
		require.Equal(t, 0, code, errOut)
		var s statusOut
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		assert.True(t, s.Running, out)
		assert.Positive(t, s.Leased)
		assert.Contains(t, s.InFlight, json.RawMessage("2"))
		assert.Equal(t, int64(1), s.Completed)
		checked = true
	}
	require.True(t, checked)
}

// The commands that change a checkpoint refuse a database with exit
// status 2 and never show its password, even before connecting.
func TestPostgresRefusedAndRedacted(t *testing.T) {
	db := "postgres://me:" + secret + "@127.0.0.1:1/jobs?connect_timeout=2"
	for _, args := range [][]string{
		{"retry", "x", "--all"}, {"forget", "x", "k"}, {"compact", "x"}, {"reset", "x"},
		{"watch", "x"}, {"runs", "x"}, {"snapshots"}, {"compare", "a", "b"},
	} {
		for _, place := range [][]string{{"--dir", db}, {"--db", db}} {
			code, out, errOut := runCmd(t, append(args, place...)...)
			assert.Equal(t, 2, code, "%v: %s", args, errOut)
			assert.Contains(t, errOut, "works on a folder of JSONL files, not on Postgres", args)
			noSecret(t, out, errOut)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"ls", "--dir", db}, 1, "postgres://me:xxxxx@127.0.0.1:1/jobs"},
		{[]string{"status", "x", "--db", db}, 1, "connect"},
		{[]string{"serve", "--db", db, "--addr", "127.0.0.1:0"}, 1, "connect"},
		{[]string{"export", "x", "--db", db, "--dir", t.TempDir()}, 1, "connect"},
		{[]string{"import", "x", "--db", db, "--dir", t.TempDir()}, 1, "connect"},
		{[]string{"ls", "--db", db, "--dir", "elsewhere"}, 2, "give one of them"},
		{[]string{"ls", "--db", "postgresql://a:" + secret + "@h/d", "--dir", db}, 2, "give one of them"},
		{[]string{"export", "x", "--dir", db}, 2, "name the database with --db"},
		{[]string{"status", "x", "--db", "host=127.0.0.1 port=1 password=" + secret + " connect_timeout=2"}, 1, "connect"},
	} {
		t.Setenv(dbEnv, "")
		code, out, errOut := runCmd(t, tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.msg, tc.args)
		noSecret(t, out, errOut)
	}
	code, _, errOut := runCmd(t, "export", "x", "--dir", t.TempDir())
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "needs a database")
}

// redactSecrets removes a password however it is quoted.
func TestRedactSecrets(t *testing.T) {
	for _, tc := range []struct{ conn, msg string }{
		{"postgres://u:p%40ss-word@h/db", "failed for postgres://u:p%40ss-word@h/db: p@ss-word"},
		{"host=h password=p@ss-word dbname=db", "bad conn host=h password=p@ss-word dbname=db"},
		{"postgresql://u@h/db?password=p@ss-word", "x p@ss-word y"},
	} {
		got := redactSecrets(tc.msg, tc.conn)
		assert.NotContains(t, got, "p@ss-word", tc.conn)
		assert.NotContains(t, got, "p%40ss-word", tc.conn)
	}
	assert.Equal(t, "no change", redactSecrets("no change", "", "checkpoints"))
}

// The web view on a database: the Experiments table, one experiment's
// counts, failures and results, through the command and its API.
func TestPostgresServe(t *testing.T) {
	db := importSample(t)
	e := &env{db: db}
	src, err := e.openSource(context.Background(), "")
	require.NoError(t, err)
	defer src.Close()
	srv := httptest.NewServer(newServeHandler(src, serveOptions{}))
	defer srv.Close()

	get := func(path string, v any) {
		t.Helper()
		code, body := getURL(t, srv.URL+path)
		require.Equal(t, 200, code, "%s: %s", path, body)
		noSecret(t, body)
		require.NoError(t, json.Unmarshal([]byte(body), v), body)
	}
	var rows []experimentRow
	get("/api/experiments", &rows)
	require.Len(t, rows, 1)
	assert.Equal(t, "sample", rows[0].Name)
	assert.Equal(t, int64(4), rows[0].Completed)
	assert.Equal(t, int64(1), rows[0].Failed)
	assert.Equal(t, "failed", rows[0].Status)

	var d experimentDetail
	get("/api/experiments/sample", &d)
	assert.Equal(t, int64(4), d.Completed)
	require.NotEmpty(t, d.Progress)
	assert.Equal(t, int64(5), d.Progress[len(d.Progress)-1].N)

	var groups []failureGroup
	get("/api/experiments/sample/failures", &groups)
	require.Len(t, groups, 1)
	assert.Equal(t, 1, groups[0].Count)
	assert.Equal(t, "timeout after Ns", groups[0].Pattern)
	var list []failure
	get("/api/experiments/sample/failures/list?pattern="+url.QueryEscape(groups[0].Pattern), &list)
	require.Len(t, list, 1)
	assert.Equal(t, 2, list[0].Attempts)

	// Pages of 3: every result once, then the end.
	var keys []string
	cursor := int64(0)
	for range 5 {
		var p resultsPage
		get(fmt.Sprintf("/api/experiments/sample/results?limit=3&cursor=%d", cursor), &p)
		for _, it := range p.Items {
			keys = append(keys, string(it.Key))
		}
		if p.Next < 0 {
			break
		}
		assert.Equal(t, int64(4), p.Size)
		assert.Equal(t, unitResults, p.Unit, "a database's cursor counts rows")
		cursor = p.Next
	}
	assert.Equal(t, []string{`"1"`, `"2"`, `"3"`, `"4"`}, keys)
	var p resultsPage
	get("/api/experiments/sample/results?q=CAF", &p)
	require.Len(t, p.Items, 1)
	assert.Equal(t, `"2"`, string(p.Items[0].Key))

	code, _ := getURL(t, srv.URL+"/api/experiments/nope")
	assert.Equal(t, 404, code)

	// The command: its banner names the database without the password.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", db, "--addr", "127.0.0.1:0"}, pw, &stderr)
		pw.Close()
	}()
	var out string
	buf := make([]byte, 4096)
	for !strings.Contains(out, "Ctrl-C") {
		n, err := pr.Read(buf)
		out += string(buf[:n])
		if err != nil {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	noSecret(t, out)
	assert.Contains(t, out, "Serving postgres://postgres:xxxxx@127.0.0.1:")
	i := strings.Index(out, "http://127.0.0.1:")
	require.GreaterOrEqual(t, i, 0, "%q %q", out, stderr.String())
	code, body := getURL(t, strings.Fields(out[i:])[0]+"api/experiments")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `"name":"sample"`)
	cancel()
	select {
	case c := <-done:
		assert.Equal(t, 0, c, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}
}
