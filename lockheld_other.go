//go:build !linux

package checkpoint

import (
	"errors"
	"os"
)

// lockHeld reports whether a process holds the lock on the lock file at
// path. Without a list of locks to read (Linux has /proc/locks), it tries the
// lock and releases it at once: a job that starts in that instant fails
// with ErrLocked and can be started again.
func lockHeld(path string) (bool, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	f, err := lockFile(path)
	if errors.Is(err, ErrLocked) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, f.Close()
}
