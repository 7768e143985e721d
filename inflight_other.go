//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package checkpoint

import (
	"errors"
	"os"
)

// mmapSupported: without mmap, in-flight tracking is off (a write per item
// would cost more than the tracking is worth).
const mmapSupported = false

func mapChunk(*os.File, int64, int) ([]byte, error) {
	return nil, errors.New("in-flight tracking needs mmap")
}

func unmapChunk([]byte) error { return nil }
