//go:build unix

package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

var resultsBenchLines = flag.Int("results.lines", 0, "results in BenchmarkResults (default 10M, 100k with -short)")

// BenchmarkResults is the command's streaming figure: checkpoint results
// NAME > /dev/null, Inspect included, in results per second (target: at
// least 1M/s), on a checkpoint written in the library's own line format.
// It also reports results per second of CPU time used (user + system, all
// threads): on a shared machine the wall clock counts other processes' turns.
func BenchmarkResults(b *testing.B) {
	n := 10_000_000
	if testing.Short() {
		n = 100_000
	}
	if *resultsBenchLines > 0 {
		n = *resultsBenchLines
	}
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "job_results.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintf(w, `{"key":%d,"result":{"id":%d,"name":"item-%d","score":%d.5,"tags":["alpha","beta"],"passed":true},"timestamp":"2026-01-02T03:04:05.%06d+00:00"}`+"\n",
			i, i, i, i%1000, i%1000000)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	cpu0 := cpuTime()
	for b.Loop() {
		if code := run(context.Background(), []string{"results", "job", "--dir", dir}, null, io.Discard); code != 0 {
			b.Fatalf("exit status %d", code)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "results/s")
	b.ReportMetric(float64(n)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "results/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
