//go:build linux

package checkpoint

import (
	"errors"
	"os"
	"syscall"
)

// fallocKeepSize is FALLOC_FL_KEEP_SIZE: reserve blocks without moving the
// file's size.
const fallocKeepSize = 0x1

// reserveBlocks reserves the blocks of [off, off+n) of f without changing
// its size. Files that are not an *os.File (the fault-injection seam) are
// not supported.
func reserveBlocks(f appendFile, off, n int64) error {
	osf, ok := f.(*os.File)
	if !ok {
		return errors.ErrUnsupported
	}
	return onFD(osf, "fallocate", func(fd int) error {
		return syscall.Fallocate(fd, fallocKeepSize, off, n)
	})
}

// trimReserved gives back the blocks f holds past size, its end, if it
// holds more than a reservation's worth of slack: a truncate to the same
// size, which on ext4 frees the blocks past the end. Files without blocks
// past the end are not touched (a truncate would move their mtime).
func trimReserved(f appendFile, size int64) error {
	osf, ok := f.(*os.File)
	if !ok {
		return nil
	}
	fi, err := osf.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Size() != size || st.Blocks*512 <= size+reservedSlack {
		return nil
	}
	return osf.Truncate(size)
}

// reservedSlack is how much more than its size a file may take on disk
// without being trimmed: the last block's rounding and the extent tree,
// well under a reservation.
const reservedSlack = 256 << 10
