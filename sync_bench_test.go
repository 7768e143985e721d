package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGroupCommit compares a naive loop that writes and fsyncs one line
// at a time with SaveResult under SyncAlways from 64 goroutines. The disk's
// speed drifts on a shared machine, so the two take turns, in slices of
// about 250ms each, within every op (-benchtime 5x runs five pairs), and
// the records/s of each and their ratio, x-naive, come from the same run.
// Sub-benchmarks measure each case alone, with fdatasync for the naive loop
// (what SyncAlways uses on Linux), one saver, and SyncNone for scale.
//
//	go test -run '^$' -bench GroupCommit -benchtime 5x .
func BenchmarkGroupCommit(b *testing.B) {
	line := []byte(`{"key":"k000000","result":{"n":1,"status":"ok"},"timestamp":"2026-11-23T13:47:51.518145+00:00"}` + "\n")
	const slice = 250 * time.Millisecond

	b.Run("naive-vs-SyncAlways-64-goroutines", func(b *testing.B) {
		f := benchFile(b)
		r := benchRunner(b, SyncAlways)
		var naiveN, groupN int
		var naiveT, groupT time.Duration
		for range b.N {
			n, d := naiveLoop(b, f, line, slice, (*os.File).Sync)
			naiveN, naiveT = naiveN+n, naiveT+d
			n, d = saveConcurrently(b, r, 64, slice)
			groupN, groupT = groupN+n, groupT+d
		}
		naive := float64(naiveN) / naiveT.Seconds()
		group := float64(groupN) / groupT.Seconds()
		b.ReportMetric(naive, "naive-records/s")
		b.ReportMetric(group, "group-records/s")
		b.ReportMetric(group/naive, "x-naive")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("naive-fdatasync", func(b *testing.B) {
		f := benchFile(b)
		var n int
		var d time.Duration
		for range b.N {
			dn, dd := naiveLoop(b, f, line, slice, func(f *os.File) error { return syncData(f) })
			n, d = n+dn, d+dd
		}
		b.ReportMetric(float64(n)/d.Seconds(), "records/s")
		b.ReportMetric(0, "ns/op")
	})
	for _, tc := range []struct {
		name   string
		policy SyncPolicy
		savers int
	}{
		{"SyncAlways-1-goroutine", SyncAlways, 1},
		{"SyncNone-64-goroutines", SyncNone, 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := benchRunner(b, tc.policy)
			var n int
			var d time.Duration
			for range b.N {
				dn, dd := saveConcurrently(b, r, tc.savers, slice)
				n, d = n+dn, d+dd
			}
			b.ReportMetric(float64(n)/d.Seconds(), "records/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func benchRunner(b *testing.B, p SyncPolicy) *Runner[string, int] {
	r, err := Open[string, int]("bench", WithDir(b.TempDir()), WithSync(p), WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// naiveLoop writes and syncs one line at a time for about d.
func naiveLoop(b *testing.B, f *os.File, line []byte, d time.Duration, sync func(*os.File) error) (int, time.Duration) {
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := sync(f); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return n, time.Since(start)
}

// saveConcurrently saves from savers goroutines for about d.
func saveConcurrently(b *testing.B, r *Runner[string, int], savers int, d time.Duration) (int, time.Duration) {
	var next atomic.Int64
	result := map[string]any{"n": 1, "status": "ok"}
	start := time.Now()
	errs := make(chan error, savers)
	for range savers {
		go func() {
			for time.Since(start) < d {
				i := next.Add(1)
				if err := r.SaveResult(fmt.Sprintf("k%09d", i), result); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range savers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return int(next.Load()), time.Since(start)
}

func benchFile(b *testing.B) *os.File {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "naive.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}
