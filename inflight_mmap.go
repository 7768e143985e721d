//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package checkpoint

import (
	"os"
	"syscall"
)

// mmapSupported: in-flight tracking maps its slot file into memory.
const mmapSupported = true

func mapChunk(f *os.File, off int64, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), off, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmapChunk(b []byte) error { return syscall.Munmap(b) }
