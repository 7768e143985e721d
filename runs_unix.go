//go:build unix

package checkpoint

import (
	"errors"
	"syscall"
)

// pidAlive reports whether a process with id pid exists: signal 0 checks
// without sending anything. EPERM means it exists under another user.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
