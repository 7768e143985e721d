package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// newTestServer serves dir on 127.0.0.1 for the length of the test.
func newTestServer(t *testing.T, dir string, o serveOptions) *httptest.Server {
	t.Helper()
	src, err := newFSSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	srv := httptest.NewServer(newServeHandler(src, o))
	t.Cleanup(srv.Close)
	return srv
}

func fetch(t *testing.T, req *http.Request) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := fetch(t, req)
	return code, body
}

// dirState is every file's name, mode, size, mtime and content hash.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		h := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		st[p] = fmt.Sprintf("%v %d %v %s", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), h)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestServeNamesStayInDir tries to reach files outside the folder through
// the names in URLs: "..", encoded slashes, absolute paths, and symlinks
// out of the folder. None may show the secret, and the folder is unchanged
// by any request (read-only).
func TestServeNamesStayInDir(t *testing.T) {
	outside := t.TempDir()
	const secret = "TOP-SECRET-do-not-serve"
	secretLine := `{"key": "s", "result": "` + secret + `", "timestamp": "2026-01-01T00:00:00"}` + "\n"
	secretError := `{"key": "e", "error": "` + secret + `", "timestamp": "2026-01-01T00:00:00"}` + "\n"
	for f, line := range map[string]string{"outside_results.jsonl": secretLine, "outside_meta.json": secretLine, "outside_errors.jsonl": secretError} {
		if err := os.WriteFile(filepath.Join(outside, f), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := t.TempDir()
	dir := filepath.Join(base, "ck")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	makeFixture(t, dir)
	// A sibling of the folder whose name a ".." could reach.
	for _, f := range []string{"sib_results.jsonl", "sib_meta.json"} {
		if err := os.WriteFile(filepath.Join(base, f), []byte(secretLine), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Symlinks out of the folder, named like a checkpoint's files.
	for _, f := range []string{"link_results.jsonl", "link_meta.json", "link_errors.jsonl"} {
		if err := os.Symlink(filepath.Join(outside, "outside"+strings.TrimPrefix(f, "link")), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	// A checkpoint whose meta file is real but whose journals lead out.
	if err := os.WriteFile(filepath.Join(dir, "half_meta.json"), []byte(`{"experiment_name": "half"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"half_results.jsonl", "half_errors.jsonl"} {
		if err := os.Symlink(filepath.Join(outside, "outside"+strings.TrimPrefix(f, "half")), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	before := dirState(t, base)
	srv := newTestServer(t, dir, serveOptions{loopback: true})

	names := []string{
		"..", "../sib", "..%2Fsib", "%2E%2E%2Fsib", "%2e%2e", "%2Fetc%2Fpasswd", "%2F" + strings.ReplaceAll(strings.TrimPrefix(outside, "/"), "/", "%2F") + "%2Foutside",
		"sub%2Foutside", "sub%5Coutside", "link", "half", "..%5Csib", "sample%00", "%00",
	}
	for _, n := range names {
		for _, suffix := range []string{"", "/results", "/results?cursor=0", "/failures", "/failures/list"} {
			url := srv.URL + "/api/experiments/" + n + suffix
			code, body := getURL(t, url)
			if strings.Contains(body, secret) {
				t.Errorf("GET %s showed the secret: %s", url, body)
			}
			if code == http.StatusOK {
				t.Errorf("GET %s = 200: %.200s", url, body)
			}
		}
		code, body := getURL(t, srv.URL+"/api/compare?name=sample&name="+n)
		if strings.Contains(body, secret) || code == http.StatusOK {
			t.Errorf("compare with %s = %d %.200s", n, code, body)
		}
	}
	for _, p := range []string{"/api/experiments", "/assets/..%2Fserve.go", "/assets/../serve_data.go", "/../../etc/passwd", "/assets/%2e%2e/serve.go"} {
		code, body := getURL(t, srv.URL+p)
		if strings.Contains(body, secret) || strings.Contains(body, "package main") || strings.Contains(body, "root:") {
			t.Errorf("GET %s (%d) showed a file from outside: %.200s", p, code, body)
		}
	}
	// The symlinked checkpoint is listed by name but shows nothing of what
	// it points at.
	code, body := getURL(t, srv.URL+"/api/experiments")
	if code != 200 || !strings.Contains(body, `"name":"sample"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		req, _ := http.NewRequest(m, srv.URL+"/api/experiments/sample", strings.NewReader("{}"))
		if code, _, _ := fetch(t, req); code != http.StatusMethodNotAllowed {
			t.Errorf("%s = %d, want 405", m, code)
		}
	}
	if after := dirState(t, base); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the folder changed under a read-only server:\nbefore %v\nafter  %v", before, after)
	}
}

func TestServeValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"eval-a", true}, {"run.2026-01-01", true}, {"日本", true},
		{"", false}, {".", false}, {"..", false}, {"a/..", false}, {"a/b", false}, {`a\b`, false},
		{"/etc/passwd", false}, {"a\x00b", false}, {"x..y", false}, {strings.Repeat("n", 300), false},
	} {
		if err := validName(tc.name); (err == nil) != tc.ok {
			t.Errorf("validName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestServeHeadersAndToken(t *testing.T) {
	dir := t.TempDir()
	makeFixture(t, dir)
	const token = "s3cret-token-for-test"
	srv := newTestServer(t, dir, serveOptions{token: token})

	get := func(path string, mod func(*http.Request)) (int, http.Header, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if mod != nil {
			mod(req)
		}
		return fetch(t, req)
	}
	for _, p := range []string{"/", "/api/experiments", "/assets/app.js", "/api/experiments/sample"} {
		code, h, _ := get(p, nil)
		if code != http.StatusUnauthorized {
			t.Errorf("%s without a token = %d", p, code)
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("%s: CSP %q", p, h.Get("Content-Security-Policy"))
		}
		if code, _, _ := get(p+"?token=wrong", nil); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token = %d", p, code)
		}
		code, h, _ = get(p, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) })
		if code != http.StatusOK {
			t.Errorf("%s with the bearer token = %d", p, code)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
	// The printed address: the token moves into an HttpOnly cookie.
	code, h, _ := get("/?token="+token, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Fatalf("/?token= gives %d to %q", code, h.Get("Location"))
	}
	c := h.Get("Set-Cookie")
	if !strings.Contains(c, token) || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
		t.Errorf("cookie %q", c)
	}
	if code, _, _ := get("/api/experiments", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: tokenCookie, Value: token}) }); code != 200 {
		t.Errorf("with the cookie: %d", code)
	}
	if code, _, _ := get("/api/experiments", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: tokenCookie, Value: token + "x"}) }); code != 401 {
		t.Errorf("with a wrong cookie: %d", code)
	}

	// A loopback server answers to loopback names only.
	lo := newTestServer(t, dir, serveOptions{loopback: true})
	for host, want := range map[string]int{"evil.example": 403, "evil.example:80": 403, "127.0.0.1": 200, "localhost:7878": 200, "[::1]:7878": 200} {
		req, _ := http.NewRequest("GET", lo.URL+"/api/experiments", nil)
		req.Host = host
		if code, _, _ := fetch(t, req); code != want {
			t.Errorf("Host %s = %d, want %d", host, code, want)
		}
	}
}

func TestServeCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		remote   bool
		token    string
		wantErr  bool
		loopback bool
	}{
		{addr: "127.0.0.1:7878", loopback: true},
		{addr: "localhost:0", loopback: true},
		{addr: "[::1]:0", loopback: true},
		{addr: "0.0.0.0:7878", wantErr: true},
		{addr: ":7878", wantErr: true},
		{addr: "192.168.1.4:7878", wantErr: true},
		{addr: "0.0.0.0:7878", remote: true},
		{addr: "0.0.0.0:7878", remote: true, token: "given"},
		{addr: "nocolon", wantErr: true},
	} {
		o := serveOptions{addr: tc.addr, allowRemote: tc.remote, token: tc.token}
		err := o.checkAddr()
		if (err != nil) != tc.wantErr {
			t.Errorf("%+v: err %v", tc, err)
			continue
		}
		var ue usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("%s: %v is not a usage error", tc.addr, err)
		}
		if err == nil && o.loopback != tc.loopback {
			t.Errorf("%s: loopback %v", tc.addr, o.loopback)
		}
		if err == nil && !o.loopback {
			if tc.token != "" && o.token != tc.token {
				t.Errorf("token %q replaced by %q", tc.token, o.token)
			}
			if tc.token == "" && len(o.token) < 32 {
				t.Errorf("%s: token %q", tc.addr, o.token)
			}
		}
	}
}

// TestServeCommand runs `checkpoint serve` as a user would and stops it.
func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	makeFixture(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0"}, pw, &stderr)
		pw.Close()
	}()
	buf := make([]byte, 4096)
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out, "Ctrl-C") && time.Now().Before(deadline) {
		n, err := pr.Read(buf)
		out += string(buf[:n])
		if err != nil {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if !strings.Contains(out, "loopback only") {
		t.Errorf("start message does not say loopback: %q", out)
	}
	i := strings.Index(out, "http://127.0.0.1:")
	if i < 0 {
		t.Fatalf("no address in %q (stderr %q)", out, stderr.String())
	}
	url := strings.Fields(out[i:])[0]
	code, body := getURL(t, url+"api/experiments")
	if code != 200 || !strings.Contains(body, `"name":"eval-a"`) {
		t.Fatalf("GET %sapi/experiments = %d %.200s", url, code, body)
	}
	cancel()
	select {
	case c := <-done:
		if c != 0 {
			t.Errorf("exit status %d, stderr %q", c, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}

	// Bad usage: a public address without --allow-remote.
	var o, e strings.Builder
	if c := run(context.Background(), []string{"serve", "--dir", dir, "--addr", "0.0.0.0:0"}, &o, &e); c != 2 || !strings.Contains(e.String(), "--allow-remote") {
		t.Errorf("public address: status %d, %q", c, e.String())
	}
}

// TestServeResultsPages walks the results by cursor: every result once,
// pages of the size asked, and a cursor in the middle of a line starts at
// the next line.
func TestServeResultsPages(t *testing.T) {
	dir := t.TempDir()
	makeFixture(t, dir)
	srv := newTestServer(t, dir, serveOptions{loopback: true})
	seen := map[string]bool{}
	cursor := int64(0)
	for pages := 0; cursor >= 0; pages++ {
		if pages > 1000 {
			t.Fatal("pages do not end")
		}
		var p resultsPage
		code, body := getURL(t, fmt.Sprintf("%s/api/experiments/history/results?cursor=%d&limit=7", srv.URL, cursor))
		if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("%d %s", code, body)
		}
		if len(p.Items) > 7 || (p.Next >= 0 && len(p.Items) != 7) {
			t.Fatalf("page at %d has %d items, next %d", cursor, len(p.Items), p.Next)
		}
		for _, it := range p.Items {
			if seen[string(it.Key)] {
				t.Fatalf("key %s twice", it.Key)
			}
			seen[string(it.Key)] = true
		}
		if p.Next >= 0 && p.Next <= cursor {
			t.Fatalf("cursor went from %d to %d", cursor, p.Next)
		}
		cursor = p.Next
	}
	if len(seen) != 2335 {
		t.Errorf("%d results, want 2335", len(seen))
	}
	// A cursor in the middle of a line.
	var p resultsPage
	_, body := getURL(t, srv.URL+"/api/experiments/history/results?cursor=5&limit=1")
	json.Unmarshal([]byte(body), &p)
	if len(p.Items) != 1 || string(p.Items[0].Key) != `"1"` || p.Cursor == 5 {
		t.Errorf("cursor 5: %s", body)
	}
	if p.Unit != unitBytes {
		t.Errorf("a folder's cursor counts %q, want bytes: %s", p.Unit, body)
	}
	// Search: only matching lines, and it goes on from where it stopped.
	_, body = getURL(t, srv.URL+"/api/experiments/history/results?q=%22tokens%22%3A%20349&limit=50")
	p = resultsPage{}
	json.Unmarshal([]byte(body), &p)
	if len(p.Items) == 0 {
		t.Fatalf("search found nothing: %s", body)
	}
	for _, it := range p.Items {
		if !strings.Contains(string(it.Result), `"tokens":349`) { // compacted by the encoder
			t.Errorf("search gave %s", it.Result)
		}
	}
}

// TestServeWhileJobsCrash keeps asking while a job writes large records, is
// killed with SIGKILL mid-write, and is repaired by the next Open: every
// answer is a 200 with valid JSON throughout.
func TestServeWhileJobsCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	makeFixture(t, dir)
	job := buildServeJob(t)
	srv := newTestServer(t, dir, serveOptions{loopback: true})

	ask := func(phase string, rounds int) {
		for i := range rounds {
			for _, p := range []string{"/api/experiments", "/api/experiments/live", "/api/experiments/live/failures",
				fmt.Sprintf("/api/experiments/live/results?cursor=%d&limit=20", i*7919), "/api/compare?name=sample&name=eval-a"} {
				code, body := getURL(t, srv.URL+p)
				if code != 200 || !json.Valid([]byte(body)) {
					t.Fatalf("%s: GET %s = %d %.300s", phase, p, code, body)
				}
			}
		}
	}
	// Records of 30 KB: a kill often lands inside one.
	cmd := startJob(t, job, dir, "live", "-every", "20ms", "-pad", "30000") // about 1.5 MB/s: the file stays small enough for -race on a loaded machine
	ask("while writing", 10)
	var row experimentRow
	_, body := getURL(t, srv.URL+"/api/experiments/live")
	json.Unmarshal([]byte(body), &row)
	if !row.Running || row.Status != "running" {
		t.Errorf("a job holds the lock, the view says running=%v status=%s", row.Running, row.Status)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// At once: the row cached while the job ran must not outlive its lock.
	for _, p := range []string{"/api/experiments/live", "/api/experiments"} {
		_, body = getURL(t, srv.URL+p)
		var rows []experimentRow
		if p == "/api/experiments/live" {
			row = experimentRow{}
			json.Unmarshal([]byte(body), &row)
			rows = []experimentRow{row}
		} else {
			json.Unmarshal([]byte(body), &rows)
		}
		for _, row := range rows {
			if row.Name == "live" && (row.Running || row.Status != "crashed") {
				t.Errorf("GET %s: a killed job shows as running=%v status=%s, want crashed (from the run history)", p, row.Running, row.Status)
			}
		}
	}
	ask("after SIGKILL", 10)
	// The next Open repairs whatever the kill left.
	r, err := checkpoint.Open[int, int]("live", checkpoint.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	ask("while open", 5)
	r.Close()
	ask("after repair", 5)
}

// TestServeFlowsAndPipelines: a flow made by NewFlow and a pipeline made by
// OpenPipeline show as rows of their kind, with their steps.
func TestServeFlowsAndPipelines(t *testing.T) {
	dir := t.TempDir()
	makeStepsFixture(t, dir)
	srv := newTestServer(t, dir, serveOptions{loopback: true})
	var rows []experimentRow
	_, body := getURL(t, srv.URL+"/api/experiments")
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatal(err, body)
	}
	kinds := map[string]string{}
	for _, r := range rows {
		kinds[r.Name] = r.Kind + " " + r.Status
	}
	if kinds["prep"] != "flow failed" || !strings.HasPrefix(kinds["eval"], "pipeline ") || kinds["eval.generate"] != "checkpoint failed" {
		t.Errorf("rows: %v", kinds)
	}
	var d experimentDetail
	_, body = getURL(t, srv.URL+"/api/experiments/prep")
	json.Unmarshal([]byte(body), &d)
	got := fmt.Sprint(d.Steps)
	if len(d.Steps) != 3 || d.Steps[0].Status != "done" || d.Steps[1].Status != "failed" || d.Steps[1].Error == "" || d.Steps[2].Status != "pending" {
		t.Errorf("flow steps %s", got)
	}
	d = experimentDetail{}
	_, body = getURL(t, srv.URL+"/api/experiments/eval")
	json.Unmarshal([]byte(body), &d)
	if len(d.Steps) != 2 || d.Steps[0].Name != "generate" || d.Steps[0].Complete != 3 || d.Steps[0].Failed != 1 || d.Steps[0].Total != 4 {
		t.Errorf("pipeline steps %+v (%s)", d.Steps, body)
	}
	// Its progress chart counts its steps' records: generate's 3 results
	// and 1 error (judge has none).
	if n := len(d.Progress); n == 0 || d.Progress[n-1].N != 4 {
		t.Errorf("pipeline progress %+v, want it to end at 4 records", d.Progress)
	}
	if code, _ := getURL(t, srv.URL+"/api/experiments/prep/failures"); code != 200 {
		t.Errorf("a flow's failures: %d", code)
	}
}
