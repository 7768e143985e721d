//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package checkpoint

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSnapshotRaw measures Save (Create, Write, Close) and Load (Open,
// read to the end) of a 100 MiB raw snapshot against writing the same bytes
// to a new file and fsyncing it, turn by turn in one loop. save-ratio and
// load-ratio are speeds relative to that copy; the goal is at least 0.8.
// read-ratio compares Load with a plain read of the same file.
//
//	go test -run '^$' -bench BenchmarkSnapshotRaw -benchtime 3x .
func BenchmarkSnapshotRaw(b *testing.B) {
	const size = 100 << 20
	dir := b.TempDir()
	s, err := OpenSnapshots(dir, WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 31)
	}
	write := func(w io.Writer) {
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	readAll := func(r io.Reader) {
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, chunk)
		if err != nil || n != size {
			b.Fatal(n, err)
		}
	}
	plain := filepath.Join(dir, "plain.bin")
	var copyT, saveT, loadT, readT time.Duration
	b.SetBytes(size)
	copyFile := func() {
		f, err := os.Create(plain)
		if err != nil {
			b.Fatal(err)
		}
		write(f)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	save := func() {
		w, err := s.Create("weights.bin")
		if err != nil {
			b.Fatal(err)
		}
		write(w)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	timed := func(fn func()) time.Duration {
		// The sync keeps each write's leftovers out of the other's time.
		syscall.Sync()
		t := time.Now()
		fn()
		return time.Since(t)
	}
	i := 0
	for b.Loop() {
		// Both write new files: replacing a snapshot would add the freeing
		// of the old one's blocks. They take turns going first.
		os.Remove(plain)
		if err := s.Delete("weights.bin"); err != nil {
			b.Fatal(err)
		}
		if i++; i%2 == 0 {
			copyT += timed(copyFile)
			saveT += timed(save)
		} else {
			saveT += timed(save)
			copyT += timed(copyFile)
		}
		loadT += timed(func() {
			r, err := s.Open("weights.bin")
			if err != nil {
				b.Fatal(err)
			}
			readAll(r)
			r.Close()
		})
		readT += timed(func() {
			f, err := os.Open(plain)
			if err != nil {
				b.Fatal(err)
			}
			readAll(f)
			f.Close()
		})
	}
	mbps := func(d time.Duration) float64 { return float64(b.N) * size / (1 << 20) / d.Seconds() }
	b.ReportMetric(mbps(copyT), "copy-MiB/s")
	b.ReportMetric(mbps(saveT), "save-MiB/s")
	b.ReportMetric(mbps(loadT), "load-MiB/s")
	b.ReportMetric(float64(copyT)/float64(saveT), "save-ratio")
	b.ReportMetric(float64(copyT)/float64(loadT), "load-ratio")
	b.ReportMetric(float64(readT)/float64(loadT), "read-ratio")
}
