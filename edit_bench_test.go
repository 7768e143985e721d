package checkpoint

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The checkpoint command's figures (issue 8), each a ratio measured in one
// run: go test -run '^$' -bench 'Inspect|Compact' -benchtime 1x (add -short
// for 100k lines instead of 1M and 10M). The results stream is measured in
// cmd/checkpoint (BenchmarkResults).

var editBenchLines = flag.Int("edit.lines", 0, "lines for BenchmarkInspect and BenchmarkCompact instead of the usual sizes")

func editBenchSizes() []int {
	if *editBenchLines > 0 {
		return []int{*editBenchLines}
	}
	return benchSizes()
}

// BenchmarkInspect: status and ls cost one Inspect per checkpoint, which
// must take no longer than one Open (and Close) of it: inspect/open <= 1.
func BenchmarkInspect(b *testing.B) {
	for _, n := range editBenchSizes() {
		b.Run(sizeName(n)+"/int64", func(b *testing.B) {
			dir := b.TempDir()
			writeBenchResults(b, dir, "job", n, func(i int) int64 { return int64(i) })
			benchInspect[int64](b, dir, n)
		})
		b.Run(sizeName(n)+"/string", func(b *testing.B) {
			dir := b.TempDir()
			writeBenchResults(b, dir, "job", n, benchStringKey)
			benchInspect[string](b, dir, n)
		})
	}
}

// benchInspect compares Inspect with Open[K] on the checkpoint in dir.
func benchInspect[K comparable](b *testing.B, dir string, n int) {
	var openTime, inspectTime, openCPU, inspectCPU time.Duration
	for b.Loop() {
		start, cpu := time.Now(), cpuTime()
		r, err := Open[K, benchRecord]("job", WithDir(dir), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		openTime += time.Since(start)
		openCPU += cpuTime() - cpu

		start, cpu = time.Now(), cpuTime()
		v, err := Inspect(dir, "job")
		if err != nil {
			b.Fatal(err)
		}
		if v.Info().Completed != n {
			b.Fatalf("Inspect counts %d, want %d", v.Info().Completed, n)
		}
		v.Close()
		inspectTime += time.Since(start)
		inspectCPU += cpuTime() - cpu
	}
	b.ReportMetric(float64(n)*float64(b.N)/inspectTime.Seconds(), "lines/s")
	b.ReportMetric(inspectTime.Seconds()/openTime.Seconds(), "inspect/open")
	if openCPU > 0 {
		b.ReportMetric(inspectCPU.Seconds()/openCPU.Seconds(), "inspect/open-cpu")
	}
}

// BenchmarkCompact: Compact of a journal whose lines are half superseded
// (every key saved twice) against cp(1) of the same file: cp-time/compact-
// time, the speed of compact as a fraction of cp's (target >= 0.5). Compact
// syncs what it wrote before it commits, which cp does not, so a second
// reference is cp followed by sync(1) of the copy: a durable copy.
func BenchmarkCompact(b *testing.B) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		b.Skip("no cp to compare with")
	}
	for _, n := range editBenchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			src := b.TempDir()
			writeBenchResults(b, src, "job", n, func(i int) int64 { return int64(i % (n / 2)) })
			data := filepath.Join(src, "job_results.jsonl")
			fi, err := os.Stat(data)
			if err != nil {
				b.Fatal(err)
			}
			// The source's pages are written back before the first round, so
			// that no cp competes with the writeback of the file it reads.
			if f, err := os.Open(data); err != nil || f.Sync() != nil || f.Close() != nil {
				b.Fatalf("sync %s: %v", data, err)
			}
			syncTool, _ := exec.LookPath("sync")
			var cpTime, syncTime, compactTime, compactCPU time.Duration
			for b.Loop() {
				b.StopTimer()
				work := b.TempDir()
				copied := filepath.Join(work, "job_results.jsonl")
				start := time.Now()
				if out, err := exec.Command(cp, data, copied).CombinedOutput(); err != nil {
					b.Fatalf("cp: %v %s", err, out)
				}
				cpTime += time.Since(start)
				if syncTool != "" {
					if out, err := exec.Command(syncTool, copied).CombinedOutput(); err != nil {
						b.Fatalf("sync: %v %s", err, out)
					}
					syncTime += time.Since(start)
				}
				b.StartTimer()

				start, cpu := time.Now(), cpuTime()
				before, after, err := Compact(work, "job")
				compactTime += time.Since(start)
				compactCPU += cpuTime() - cpu
				if err != nil {
					b.Fatal(err)
				}
				if before != fi.Size() || after >= before*3/4 {
					b.Fatalf("compact: %d bytes before, %d after, of a %d-byte file half superseded", before, after, fi.Size())
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/compactTime.Seconds(), "lines/s")
			// Seconds per round of each, for the arithmetic of the ratios.
			b.ReportMetric(compactTime.Seconds()/float64(b.N), "compact-s")
			b.ReportMetric(cpTime.Seconds()/float64(b.N), "cp-s")
			if syncTool != "" {
				b.ReportMetric(syncTime.Seconds()/float64(b.N), "cp+sync-s")
			}
			b.ReportMetric(cpTime.Seconds()/compactTime.Seconds(), "x-cp-speed")
			if compactCPU > 0 {
				b.ReportMetric(compactCPU.Seconds()/float64(b.N), "compact-cpu-s")
			}
			if syncTool != "" {
				b.ReportMetric(syncTime.Seconds()/compactTime.Seconds(), "x-cp+sync-speed")
			}
		})
	}
}
