//go:build linux

package checkpoint

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to the
// disk now, without waiting for it (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE), so that a large file's final fsync does not wait
// for all of it. It promises nothing: the fsync still does. Errors are
// ignored for the same reason.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// copyFileRange appends n bytes at off in src to dst (at dst's position),
// in the kernel, and returns how many it appended before it stopped.
func copyFileRange(dst, src *os.File, off, n int64) int64 {
	var done int64
	sc, err := src.SyscallConn()
	if err != nil {
		return 0
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return 0
	}
	sc.Control(func(sfd uintptr) {
		dc.Control(func(dfd uintptr) {
			roff := off
			for done < n {
				c, err := unix.CopyFileRange(int(sfd), &roff, int(dfd), nil, int(n-done), 0)
				if err == unix.EINTR {
					continue
				}
				if err != nil || c <= 0 {
					return
				}
				done += int64(c)
			}
		})
	})
	return done
}
