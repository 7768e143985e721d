//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package checkpoint

import (
	"os"
	"time"
)

// lockFolder orders publishes and second looks within this process only:
// without flock(2) there is no lock on a folder that other processes see.
func (s *Snapshots) lockFolder(exclusive bool) (unlock func(), err error) {
	if exclusive {
		s.mu.Lock()
		return s.mu.Unlock, nil
	}
	s.mu.RLock()
	return s.mu.RUnlock, nil
}

// lockTemp cannot lock here; see abandoned.
func lockTemp(*os.File) (bool, error) { return true, nil }

// abandoned takes a temporary file untouched for a day as abandoned, since
// without flock(2) a live writer cannot be told from a dead one.
func abandoned(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && time.Since(fi.ModTime()) > 24*time.Hour
}
