package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGroupCommit compares, in one run, a naive loop that writes and
// fsyncs one line at a time (and the same loop with fdatasync, which
// SyncAlways uses on Linux) with SaveResult under SyncAlways from 1 and from
// 64 goroutines (and SyncNone for scale). Each reports records/s; the
// 64-goroutine case also measures both naive loops just before it and
// reports x-naive (its records/s over the naive fsync loop's) and
// x-naive-fdatasync.
//
//	go test -run '^$' -bench GroupCommit -benchtime 3s .
func BenchmarkGroupCommit(b *testing.B) {
	line := []byte(`{"key":"k000000","result":{"n":1,"status":"ok"},"timestamp":"2026-11-23T13:47:51.518145+00:00"}` + "\n")

	b.Run("naive-fsync-per-record", func(b *testing.B) {
		f := benchFile(b)
		b.ResetTimer()
		for range b.N {
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("naive-fdatasync-per-record", func(b *testing.B) {
		f := benchFile(b)
		b.ResetTimer()
		for range b.N {
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
			if err := syncData(f); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})

	for _, tc := range []struct {
		name    string
		policy  SyncPolicy
		savers  int
		compare bool
	}{
		{"SyncAlways-1-goroutine", SyncAlways, 1, false},
		{"SyncAlways-64-goroutines", SyncAlways, 64, true},
		{"SyncNone-64-goroutines", SyncNone, 64, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var naive, naiveData float64
			if tc.compare {
				naive = naiveRate(b, line, 300, (*os.File).Sync)
				naiveData = naiveRate(b, line, 300, func(f *os.File) error { return syncData(f) })
			}
			r, err := Open[string, int]("bench", WithDir(b.TempDir()), WithSync(tc.policy), WithLogger(quietLogger()))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			var next atomic.Int64
			result := map[string]any{"n": 1, "status": "ok"}
			b.ResetTimer()
			// b.N records in all, shared by tc.savers goroutines.
			errs := make(chan error, tc.savers)
			for range tc.savers {
				go func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							errs <- nil
							return
						}
						if err := r.SaveResult(fmt.Sprintf("k%07d", i), result); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			for range tc.savers {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			rate := reportRate(b)
			if tc.compare {
				b.ReportMetric(naive, "naive-records/s")
				b.ReportMetric(rate/naive, "x-naive")
				b.ReportMetric(rate/naiveData, "x-naive-fdatasync")
			}
		})
	}
}

func benchFile(b *testing.B) *os.File {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "naive.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// naiveRate measures the naive loop, write then sync, over n records.
func naiveRate(b *testing.B, line []byte, n int, sync func(*os.File) error) float64 {
	f := benchFile(b)
	start := time.Now()
	for range n {
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := sync(f); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func reportRate(b *testing.B) float64 {
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "records/s")
	return rate
}
