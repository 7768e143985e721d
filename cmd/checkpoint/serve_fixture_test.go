package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// The folder the serve tests look at: checkpoints made by the library, the
// Python-written sample, a hand-written Python-format history spread over
// forty minutes, and (startJob) a job running in another process.

// xssResult is a result that would run script if the page ever put a value
// into markup.
const xssResult = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`

func makeFixture(t testing.TB, dir string) {
	t.Helper()
	type res struct {
		Label string  `json:"label"`
		Score float64 `json:"score"`
	}
	write := func(name string, params map[string]any, accuracy float64, keys []int, label func(int) string, fail func(int) error) {
		r, err := checkpoint.Open[int, int](name, checkpoint.WithDir(dir), checkpoint.WithParams(params))
		if err != nil {
			t.Fatal(err)
		}
		for range r.Iterate(keys, func(k int) int { return k }) {
		}
		for i, k := range keys {
			if i%10 == 9 { // a metric per ten items, as an evaluation logs them
				step := int64(i + 1)
				acc := accuracy - 0.2*float64(len(keys)-i)/float64(len(keys))
				if err := r.LogMetrics(map[string]float64{"accuracy": acc, "f1": acc - 0.05}, checkpoint.AtStep(step)); err != nil {
					t.Fatal(err)
				}
			}
			if err := fail(k); err != nil {
				if err := r.SaveError(k, err); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := r.SaveResult(k, res{Label: label(k), Score: float64(k%10) / 10}); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	label := func(k int) string { return []string{"cat", "dog", "bird"}[k%3] }
	keysA := seq(0, 100)
	write("eval-a", map[string]any{"model": "gpt-4o", "temperature": 0, "prompt": "v2"}, 0.93, keysA, label, func(k int) error {
		switch {
		case k >= 95:
			return fmt.Errorf("HTTP 429: too many requests (retry after %ds)", k%7+1)
		case k >= 90:
			return errors.New("timeout after 30s")
		}
		return nil
	})
	// B: keys 0-4 missing, 100-104 added, label changed on k%10 == 3, and
	// 90-94 now complete.
	write("eval-b", map[string]any{"model": "claude-sonnet", "temperature": 0, "prompt": "v2"}, 0.88, seq(5, 105), func(k int) string {
		if k%10 == 3 {
			return "fox"
		}
		return label(k)
	}, func(k int) error {
		if k >= 95 && k < 100 {
			return fmt.Errorf("HTTP 429: too many requests (retry after %ds)", k%5+2)
		}
		return nil
	})

	x, err := checkpoint.Open[string, string]("xss", checkpoint.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for range x.Iterate([]string{"<b>k</b>", "plain"}, func(s string) string { return s }) {
	}
	if err := x.SaveResult("<b>k</b>", map[string]string{"text": xssResult}); err != nil {
		t.Fatal(err)
	}
	if err := x.SaveError("plain", errors.New(xssResult)); err != nil {
		t.Fatal(err)
	}
	x.Close()

	// The Python library's own sample, as committed in checkpoints/.
	for _, f := range []string{"sample_meta.json", "sample_results.jsonl", "sample_errors.jsonl"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "checkpoints", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeHistory(t, dir, "history", 2400)
}

// writeHistory writes a checkpoint in the Python library's format whose
// records are spread over forty minutes at a changing rate, as a real
// evaluation's would be.
func writeHistory(t testing.TB, dir, name string, n int) {
	t.Helper()
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.Local)
	var res, errs strings.Builder
	ts := start
	failed := 0
	for i := range n {
		// Fast, then a slow patch (rate limits), then fast again.
		step := 700 * time.Millisecond
		if i > n/3 && i < n/2 {
			step = 2500 * time.Millisecond
		}
		ts = ts.Add(step)
		stamp := ts.Format("2006-01-02T15:04:05.000000")
		if i%37 == 5 {
			failed++
			fmt.Fprintf(&errs, "{\"key\": \"%d\", \"error\": \"rate limited, retry after %d ms\", \"timestamp\": \"%s\"}\n", i, 100+i%900, stamp)
			continue
		}
		fmt.Fprintf(&res, "{\"key\": \"%d\", \"result\": {\"answer\": \"A%d\", \"correct\": %t, \"tokens\": %d}, \"timestamp\": \"%s\"}\n", i, i%4, i%5 != 0, 100+i%250, stamp)
	}
	meta := fmt.Sprintf(`{
  "experiment_name": %q,
  "started_at": %q,
  "last_updated": %q,
  "total_items": %d,
  "completed_items": %d,
  "failed_items": %d,
  "schema_version": "1.0.0"
}`, name, start.Format("2006-01-02T15:04:05.000000"), ts.Format("2006-01-02T15:04:05.000000"), n, n-failed, failed)
	for f, b := range map[string]string{name + "_results.jsonl": res.String(), name + "_errors.jsonl": errs.String(), name + "_meta.json": meta} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// buildServeJob builds testdata/servejob, the slow job the tests watch.
func buildServeJob(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "servejob")
	out, err := exec.Command(goTool, "build", "-buildvcs=false", "-o", bin, "./testdata/servejob").CombinedOutput()
	if err != nil {
		t.Fatalf("build servejob: %v\n%s", err, out)
	}
	return bin
}

// startJob runs servejob in dir and returns once it has saved a record. The
// process is killed when the test ends (and stops by itself after -max).
func startJob(t testing.TB, bin, dir, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-dir", dir, "-name", name, "-max", "90s"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		line <- sc.Text()
		for sc.Scan() {
		}
	}()
	select {
	case l := <-line:
		if l != "saving" {
			t.Fatalf("servejob said %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("servejob did not start saving within 30s")
	}
	return cmd
}
