//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package checkpoint

import (
	"errors"
	"os"
	"syscall"
)

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
