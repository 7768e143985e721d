//go:build linux

package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// allocated is the disk space f's blocks take, and its size.
func allocated(t *testing.T, path string) (disk, size int64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512, st.Size
}

// openPre opens the checkpoint "pre" in dir, quietly, with opts.
func openPre(t *testing.T, dir string, opts ...Option) *Runner[int, string] {
	t.Helper()
	r, err := Open[int, string]("pre", append([]Option{WithDir(dir), WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// saveUntil saves results of 100 bytes with keys from, from+1, … until the
// results journal holds size bytes, and returns the next key.
func saveUntil(t *testing.T, r *Runner[int, string], from int, size int64) int {
	t.Helper()
	pad := strings.Repeat("x", 100)
	for ; r.results.size < size; from++ {
		if err := r.SaveResult(from, pad); err != nil {
			t.Fatal(err)
		}
	}
	return from
}

// TestPreallocReservesAndReleases: once a journal passes preallocFrom, blocks
// are reserved ahead of its end without moving its size, every record reads
// back, and Close gives the reserved blocks back.
func TestPreallocReservesAndReleases(t *testing.T) {
	dir := t.TempDir()
	needFallocate(t, dir)
	r := openPre(t, dir)
	n := saveUntil(t, r, 0, preallocFrom+preallocChunk) // past the first reservation's renewal
	r.mu.Lock()
	r.results.pre.running.Wait()
	size := r.results.size
	reserved := r.results.pre.reserved.Load()
	r.mu.Unlock()
	path := filepath.Join(dir, "pre_results.jsonl")
	disk, fsize := allocated(t, path)
	if fsize != size {
		t.Fatalf("file size %d, want the lines' %d: the reservation must not move the size", fsize, size)
	}
	if reserved < size+preallocChunk/2 {
		t.Fatalf("reserved up to %d, want at least %d ahead of the end %d", reserved, preallocChunk/2, size)
	}
	if disk < reserved {
		t.Fatalf("file takes %d bytes on disk, want at least the %d reserved", disk, reserved)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	disk, fsize = allocated(t, path)
	if fsize != size {
		t.Fatalf("size after Close %d, want %d", fsize, size)
	}
	if disk >= size+preallocChunk/2 {
		t.Fatalf("after Close the file takes %d bytes on disk for %d of lines: the reservation was not given back", disk, size)
	}

	r = openPre(t, dir)
	defer r.Close()
	if got, _ := r.Progress(); got != n {
		t.Fatalf("reopened with %d completed, want %d", got, n)
	}
}

// TestPreallocUnsupported: where fallocate fails, the first failure turns
// the reservation off and saves go on.
func TestPreallocUnsupported(t *testing.T) {
	files := map[string]*faultyFile{}
	r := openPre(t, t.TempDir(), withFaultyFiles(files))
	defer r.Close()
	saveUntil(t, r, 0, 2*preallocFrom)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results.pre.running.Wait()
	if !r.results.pre.off || r.results.pre.reserved.Load() != 0 {
		t.Fatalf("off %v, reserved %d: want off after the unsupported file, nothing reserved",
			r.results.pre.off, r.results.pre.reserved.Load())
	}
	if err := reserveBlocks(files["_results.jsonl"], 0, 1); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("reserveBlocks on a wrapped file: %v, want ErrUnsupported", err)
	}
}

// needFallocate skips a test where dir's filesystem has no fallocate.
func needFallocate(t *testing.T, dir string) {
	t.Helper()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe.Name())
	defer probe.Close()
	if err := reserveBlocks(probe, 0, 1<<20); err != nil {
		t.Skipf("the filesystem of %s has no fallocate: %v", dir, err)
	}
}

// TestPreallocFailureGivesBack: a fallocate that fails part-way, as one
// does on a full disk (ENOSPC), keeps the blocks it got; the next append
// gives them back and turns reservation off, and saves go on.
func TestPreallocFailureGivesBack(t *testing.T) {
	dir := t.TempDir()
	needFallocate(t, dir)
	r := openPre(t, dir)
	defer r.Close()
	r.mu.Lock()
	r.results.pre.reserve = func(f appendFile, off, n int64) error {
		if err := reserveBlocks(f, off, n); err != nil {
			return err
		}
		return syscall.ENOSPC
	}
	r.mu.Unlock()
	path := filepath.Join(dir, "pre_results.jsonl")
	i := saveUntil(t, r, 0, preallocFrom)
	r.mu.Lock()
	r.results.pre.running.Wait() // the failed reservation has run
	size := r.results.size
	r.mu.Unlock()
	if disk, _ := allocated(t, path); disk < size+preallocChunk/2 {
		t.Fatalf("the planted fallocate left %d bytes on disk for %d of lines: it did not reserve", disk, size)
	}
	saveUntil(t, r, i, r.results.size+1) // one more save gives them back
	r.mu.Lock()
	off, size := r.results.pre.off, r.results.size
	r.mu.Unlock()
	disk, _ := allocated(t, path)
	if !off || disk >= size+reservedSlack {
		t.Fatalf("after the failure: off %v, %d bytes on disk for %d of lines; want off and the blocks given back", off, disk, size)
	}
}

// TestPreallocLeftoverGivenBack: blocks a job killed before its Close left
// reserved are given back by the next Open, before anything else is
// written (on a full disk, the meta file needs them).
func TestPreallocLeftoverGivenBack(t *testing.T) {
	dir := t.TempDir()
	needFallocate(t, dir)
	r := openPre(t, dir)
	for i := range 100 {
		if err := r.SaveResult(i, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pre_results.jsonl")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, size := allocated(t, path)
	err = reserveBlocks(f, size, preallocChunk) // what a killed job leaves
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if disk, _ := allocated(t, path); disk < size+preallocChunk/2 {
		t.Fatalf("planted %d bytes on disk for %d of lines: want the reservation", disk, size)
	}
	r = openPre(t, dir)
	defer r.Close()
	if disk, fsize := allocated(t, path); fsize != size || disk >= size+reservedSlack {
		t.Fatalf("after Open: %d bytes on disk, size %d, for %d of lines: the leftover was not given back", disk, fsize, size)
	}
	if got, _ := r.Progress(); got != 100 {
		t.Fatalf("reopened with %d completed, want 100", got)
	}
}
