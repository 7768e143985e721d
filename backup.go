package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// backupFiles moves those of paths that exist into a new folder
// dir/label.bak-<timestamp>/ and returns its path, or "" when none existed.
// The files keep their names. The folder is synced after the moves, so the
// backup is durable when backupFiles returns. The caller holds the lock of
// whatever the files belong to.
func backupFiles(dir, label string, paths []string) (string, error) {
	var exist []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			exist = append(exist, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("checkpoint: backup: %w", err)
		}
	}
	if len(exist) == 0 {
		return "", nil
	}
	stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
	bak := filepath.Join(dir, label+".bak-"+stamp)
	if err := os.Mkdir(bak, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: backup: %w", err)
	}
	for _, p := range exist {
		if err := os.Rename(p, filepath.Join(bak, filepath.Base(p))); err != nil {
			return bak, fmt.Errorf("checkpoint: backup: %w", err)
		}
	}
	if err := errors.Join(syncDir(bak), syncDir(dir)); err != nil {
		return bak, fmt.Errorf("checkpoint: backup: %w", err)
	}
	return bak, nil
}
