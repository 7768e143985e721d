package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Compact, Retry, Forget and Reset replace or move several files at once,
// and two renames cannot happen as one. So each of them prepares everything
// first (new files written and synced beside the old ones), then commits by
// writing a marker file, DIR/NAME.renames, atomically: the list of renames
// still to do. Only then does it rename, and it removes the marker last.
//
// A process killed before the marker leaves the old state and some temporary
// files; killed after it, the new state, half moved. finishRenames, which
// Open and every changing command run under the checkpoint's lock before
// reading anything, tells the two apart by the marker alone: it rolls a
// committed batch forward, and removes the temporary files of one that was
// not committed. Readers that do not take the lock (Inspect) resolve the
// marker the same way in memory (see resolvePath).

// renameBatch is the marker's content. Paths are relative to the folder.
type renameBatch struct {
	Renames [][2]string `json:"renames"` // from, to
}

// rewriteSuffix names the new journals that a rewrite prepares.
const rewriteSuffix = ".rewrite"

func markerPath(dir, label string) string {
	return filepath.Join(dir, label+".renames")
}

// commitRenames performs renames (pairs of paths relative to dir) so that a
// crash at any moment leaves all of them or none done, as seen by
// finishRenames. The caller holds label's lock and has synced every source
// file.
func commitRenames(dir, label string, renames [][2]string) error {
	b, err := json.Marshal(renameBatch{Renames: renames})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(markerPath(dir, label), b, os.Rename); err != nil {
		return fmt.Errorf("checkpoint: commit: %w", err)
	}
	return applyRenames(dir, label, renames)
}

// applyRenames does the renames of a committed batch (those whose source is
// still there), syncs the folders and removes the marker.
func applyRenames(dir, label string, renames [][2]string) error {
	dirs := map[string]bool{dir: true}
	for _, rn := range renames {
		from, to := filepath.Join(dir, rn[0]), filepath.Join(dir, rn[1])
		if err := os.Rename(from, to); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("checkpoint: %w", err)
		}
		dirs[filepath.Dir(to)] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	if err := os.Remove(markerPath(dir, label)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// finishRenames completes or undoes a batch of renames left by a process
// that died during commitRenames or before it. The caller holds label's
// lock. Open calls it; so must any code that uses backupFiles for files of
// its own, before reading them.
func finishRenames(dir, label string, log *slog.Logger) error {
	marker := markerPath(dir, label)
	removeTemps(marker, log) // a marker whose writing was cut short: not committed
	batch, err := readMarker(marker)
	switch {
	case err == nil:
		if err := applyRenames(dir, label, batch.Renames); err != nil {
			return err
		}
		log.Info("checkpoint: finished a rewrite that a crash interrupted", "file", marker)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("checkpoint: %s: %w", marker, err)
	}
	// Temporary files without a marker were never committed.
	for _, suffix := range []string{"_results.jsonl", "_errors.jsonl", "_meta.json"} {
		p := filepath.Join(dir, label+suffix+rewriteSuffix)
		if err := os.Remove(p); err == nil {
			log.Info("checkpoint: removed an uncommitted rewrite left by a crash", "file", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

func readMarker(path string) (renameBatch, error) {
	var batch renameBatch
	b, err := os.ReadFile(path)
	if err != nil {
		return batch, err
	}
	if err := json.Unmarshal(b, &batch); err != nil {
		// writeFileAtomic never leaves a partial marker: this is damage.
		return batch, fmt.Errorf("%w: unreadable rename marker: %v", ErrCorrupt, err)
	}
	for _, rn := range batch.Renames {
		for _, p := range rn {
			if p == "" || filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..") {
				return batch, fmt.Errorf("%w: rename marker names %q, outside the folder", ErrCorrupt, p)
			}
		}
	}
	return batch, nil
}

// resolvePath returns the file that holds path's content for a reader that
// does not take the lock: if a committed batch is still being applied, the
// new file (or "" when the batch moves path away); otherwise path itself.
func resolvePath(dir, label, path string) string {
	batch, err := readMarker(markerPath(dir, label))
	if err != nil {
		return path
	}
	for _, rn := range batch.Renames {
		from, to := filepath.Join(dir, rn[0]), filepath.Join(dir, rn[1])
		switch {
		case to == path:
			if _, err := os.Stat(from); err == nil {
				return from
			}
			return path
		case from == path:
			return "" // moved into a backup: gone
		}
	}
	return path
}
