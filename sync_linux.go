//go:build linux

package checkpoint

import (
	"os"
	"syscall"
)

// syncData forces f's data to stable storage with fdatasync(2): for an
// append-only file it writes the data and the new size, as fsync does, but
// skips the timestamps, which makes each sync cheaper. Files that are not an
// *os.File (the fault-injection seam) use their Sync.
func syncData(f appendFile) error {
	osf, ok := f.(*os.File)
	if !ok {
		return f.Sync()
	}
	return onFD(osf, "fdatasync", syscall.Fdatasync)
}
