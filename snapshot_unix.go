//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package checkpoint

import (
	"errors"
	"os"
	"syscall"
)

// lockFolder takes a flock on the snapshots folder, exclusive or shared,
// waiting for it. A publish holds it exclusive while its rename and the
// removal of the other kind's file are in flight; a reader that found
// nothing holds it shared to look again at a folder that is not changing
// under it. Each call opens the folder anew, so the flock orders goroutines
// of one process as well as processes. The folder's absence is
// fs.ErrNotExist.
func (s *Snapshots) lockFolder(exclusive bool) (unlock func(), err error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := onFD(d, "flock", func(fd int) error { return syscall.Flock(fd, how) }); err != nil {
		d.Close()
		return nil, err
	}
	return func() { d.Close() }, nil
}

// lockTemp takes an exclusive flock on a snapshot's temporary file without
// waiting. Its writer holds it until the file is published or discarded, and
// the kernel drops it when the writer dies: a temporary file whose lock can
// be taken belongs to nobody.
func lockTemp(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// abandoned reports whether a temporary file whose lock was taken is
// abandoned: here the lock says it all.
func abandoned(*os.File) bool { return true }
