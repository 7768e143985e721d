//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package checkpoint

import (
	"errors"
	"os"
)

// mmapSupported: without mmap (Windows and the rest), slots are written
// with WriteAt, a system call at the start and at the end of each item.
const mmapSupported = false

func mapChunk(*os.File, int64, int) ([]byte, error) {
	return nil, errors.New("in-flight tracking: no mmap here")
}

func unmapChunk([]byte) error { return nil }
