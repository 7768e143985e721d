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

// TestPreallocReservesAndReleases: once a journal passes preallocFrom, blocks
// are reserved ahead of its end without moving its size, every record reads
// back, and Close gives the reserved blocks back.
func TestPreallocReservesAndReleases(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	perr := reserveBlocks(probe, 0, 1<<20)
	probe.Close()
	if perr != nil {
		t.Skipf("the filesystem of %s has no fallocate: %v", dir, perr)
	}

	r, err := Open[int, string]("pre", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 100)
	n := 0
	for r.results.size < preallocFrom+preallocChunk { // past the first reservation's renewal
		if err := r.SaveResult(n, pad); err != nil {
			t.Fatal(err)
		}
		n++
	}
	r.mu.Lock()
	r.results.pre.wait()
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

	r, err = Open[int, string]("pre", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := r.Progress(); got != n {
		t.Fatalf("reopened with %d completed, want %d", got, n)
	}
}

// TestPreallocUnsupported: where fallocate fails, the first failure turns
// the reservation off and saves go on.
func TestPreallocUnsupported(t *testing.T) {
	files := map[string]*faultyFile{}
	r, err := Open[int, string]("pre", WithDir(t.TempDir()), withFaultyFiles(files))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pad := strings.Repeat("x", 100)
	for i := 0; r.results.size < 2*preallocFrom; i++ {
		if err := r.SaveResult(i, pad); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results.pre.wait()
	if !r.results.pre.off.Load() || r.results.pre.reserved.Load() != 0 {
		t.Fatalf("off %v, reserved %d: want off after the unsupported file, nothing reserved",
			r.results.pre.off.Load(), r.results.pre.reserved.Load())
	}
	if err := reserveBlocks(files["_results.jsonl"], 0, 1); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("reserveBlocks on a wrapped file: %v, want ErrUnsupported", err)
	}
}
