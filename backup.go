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
// The files keep their names. The moves are one batch (see commitRenames):
// a crash midway leaves a marker that the next finishRenames(dir, label)
// completes, so the files are never split between the two folders. The
// caller holds the lock of whatever the files belong to.
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
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("checkpoint: backup: %w", err)
	}
	renames := make([][2]string, 0, len(exist))
	for _, p := range exist {
		from, err := filepath.Rel(dir, p)
		if err != nil {
			return "", fmt.Errorf("checkpoint: backup: %w", err)
		}
		renames = append(renames, [2]string{from, filepath.Join(filepath.Base(bak), filepath.Base(p))})
	}
	if err := commitRenames(dir, label, renames); err != nil {
		return bak, fmt.Errorf("checkpoint: backup: %w", err)
	}
	return bak, nil
}
