package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// BenchmarkServeExperiments times the Experiments view's one data request
// on a folder of 200 checkpoints against one `checkpoint status` of each,
// in the same run, and reports the ratio (goal: at most 1.5).
//
// The baseline runs the status subcommand in process (--json), as a script
// would per checkpoint, minus the process start. The list is timed cold
// (its row cache emptied), and warm for information.
//
//	go test -run '^$' -bench ServeExperiments ./cmd/checkpoint
func BenchmarkServeExperiments(b *testing.B) {
	const checkpoints, results = 200, 500
	dir := b.TempDir()
	for i := range checkpoints {
		r, err := checkpoint.Open[int, int](fmt.Sprintf("exp-%03d", i), checkpoint.WithDir(dir))
		if err != nil {
			b.Fatal(err)
		}
		for k := range results {
			if k%50 == 7 {
				err = r.SaveError(k, fmt.Errorf("timeout after %ds", k%30))
			} else {
				err = r.SaveResult(k, map[string]any{"label": "cat", "score": float64(k) / results})
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		r.Close()
	}
	src, err := newFSSource(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	srv := httptest.NewServer(newServeHandler(src, serveOptions{loopback: true}))
	defer srv.Close()
	client := srv.Client()
	names, err := src.names()
	if err != nil || len(names) != checkpoints {
		b.Fatalf("%d names, %v", len(names), err)
	}
	status := statusBaseline(dir, src)

	list := func() {
		res, err := client.Get(srv.URL + "/api/experiments")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || n < checkpoints*100 {
			b.Fatalf("status %d, %d bytes", res.StatusCode, n)
		}
	}
	list() // warm the connection and the page cache
	var listTime, statusTime, warmTime time.Duration
	for b.Loop() {
		// Cold: no row cached, every checkpoint inspected, as the first
		// request of a page is.
		src.mu.Lock()
		clear(src.cache)
		src.mu.Unlock()
		t0 := time.Now()
		list()
		t1 := time.Now()
		list() // warm: the rows of unchanged checkpoints are reused
		warmTime += time.Since(t1)
		t1 = time.Now()
		for _, n := range names {
			status(n)
		}
		listTime += t1.Sub(t0)
		statusTime += time.Since(t1)
	}
	b.ReportMetric(float64(listTime.Microseconds())/float64(b.N), "list-µs/op")
	b.ReportMetric(float64(statusTime.Microseconds())/float64(b.N), "200-status-µs/op")
	b.ReportMetric(float64(warmTime.Microseconds())/float64(b.N), "warm-list-µs/op")
	b.ReportMetric(float64(listTime)/float64(statusTime), "list/status-ratio")
}

// statusBaseline is one `status` of a checkpoint: the subcommand when it
// is there, else the library's Inspect a status makes.
func statusBaseline(dir string, src *fsSource) func(name string) {
	root := newRootCmd(&env{stdout: io.Discard, stderr: io.Discard})
	if c, _, err := root.Find([]string{"status"}); err == nil && c.Name() == "status" {
		return func(name string) {
			if code := run(context.Background(), []string{"status", "--json", "--dir", dir, name}, io.Discard, io.Discard); code != 0 {
				panic(fmt.Sprintf("status %s: exit %d", name, code))
			}
		}
	}
	return func(name string) { src.makeRow(name) }
}
