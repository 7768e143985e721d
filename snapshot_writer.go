package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// tempPrefix starts the names of the temporary files of snapshots being
// written (".tmp-" and CreateTemp's digits): no snapshot file has such a
// name, since those end in .json or .raw.
const tempPrefix = ".tmp-"

// A SnapshotWriter writes a snapshot made by Snapshots.Create. What is
// written goes to a temporary file, invisible to readers, and is published
// under the snapshot's name by Close. Abort, or a crash, discards it.
// A SnapshotWriter is not safe for concurrent use.
type SnapshotWriter struct {
	s    *Snapshots
	f    *os.File
	name string
	kind string
	err  error // the first write error: Close then publishes nothing
	done bool
}

// Create starts writing a raw snapshot called name. It replaces any
// snapshot of that name when Close returns nil. Writes stream to disk, so
// the size is not limited by memory.
//
//	w, err := snaps.Create("weights.bin")
//	if err != nil { ... }
//	defer w.Abort() // does nothing once Close has published
//	if _, err := io.Copy(w, src); err != nil { ... }
//	if err := w.Close(); err != nil { ... }
func (s *Snapshots) Create(name string) (*SnapshotWriter, error) {
	if err := checkSnapshotName(name); err != nil {
		return nil, err
	}
	return s.create(name, SnapshotRaw)
}

func (s *Snapshots) create(name, kind string) (*SnapshotWriter, error) {
	f, err := s.createTemp()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: snapshot %q: %w", name, err)
	}
	return &SnapshotWriter{s: s, f: f, name: name, kind: kind}, nil
}

// createTemp makes a temporary file in the folder, making the folder if
// needed, and locks it so that removeTemps in another Snapshots leaves it
// alone. If removeTemps got to it between its creation and the lock, it
// tries again with a new one.
func (s *Snapshots) createTemp() (*os.File, error) {
	for range 10 {
		f, err := os.CreateTemp(s.dir, tempPrefix+"*")
		if errors.Is(err, fs.ErrNotExist) {
			if err = makeDir(s.dir); err == nil {
				f, err = os.CreateTemp(s.dir, tempPrefix+"*")
			}
		}
		if err != nil {
			return nil, err
		}
		ok, err := lockTemp(f)
		if err == nil && ok {
			var a, b fs.FileInfo
			if a, err = f.Stat(); err == nil {
				if b, err = os.Stat(f.Name()); err == nil && os.SameFile(a, b) {
					if err = f.Chmod(0o644); err == nil {
						return f, nil
					}
				}
			}
		}
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			os.Remove(f.Name())
			return nil, err
		}
	}
	return nil, errors.New("could not make a temporary file: removed by others each time")
}

// removeTemps deletes the temporary files of writers that are gone: those
// whose lock it can take.
func (s *Snapshots) removeTemps() error {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !isTempName(e.Name(), tempPrefix) {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if ok, _ := lockTemp(f); ok && abandoned(f) {
			if os.Remove(p) == nil {
				s.log.Info("checkpoint: removed an unfinished snapshot", "file", p)
			}
		}
		f.Close()
	}
	return nil
}

// Write writes p to the snapshot.
func (w *SnapshotWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("checkpoint: snapshot %q: write after Close or Abort: %w", w.name, os.ErrClosed)
	}
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// ReadFrom copies r into the snapshot; io.Copy uses it, which lets the
// kernel copy between files without passing the bytes through memory.
func (w *SnapshotWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.done {
		return 0, fmt.Errorf("checkpoint: snapshot %q: write after Close or Abort: %w", w.name, os.ErrClosed)
	}
	n, err := w.f.ReadFrom(r)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// Close publishes the snapshot: it syncs the file to disk, renames it to
// the snapshot's name and syncs the folder. If a write failed, or any of
// this does, nothing is published and the temporary file is removed.
// Calling Close again returns an error wrapping os.ErrClosed.
func (w *SnapshotWriter) Close() (err error) {
	if w.done {
		return fmt.Errorf("checkpoint: snapshot %q: %w", w.name, os.ErrClosed)
	}
	w.done = true
	tmp := w.f.Name()
	defer func() {
		if err != nil {
			w.f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("checkpoint: snapshot %q: %w", w.name, err)
		}
	}()
	if w.err != nil {
		return fmt.Errorf("a write failed: %w", w.err)
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	// The rename keeps the time of the last write; the saved-at time, which
	// also decides between two kinds of one name, is the publishing.
	now := time.Now()
	if err := os.Chtimes(tmp, now, now); err != nil {
		return err
	}
	if err := w.publish(tmp, now); err != nil {
		return err
	}
	w.f.Close() // drops the lock, now that the file is no longer a temporary one
	return syncDir(w.s.dir)
}

// publish renames the temporary file to the snapshot's name and removes the
// other kind's file, with the folder locked: so two saves of different kinds
// cannot each remove the other's new file, and a reader never looks while
// the name is between the two.
func (w *SnapshotWriter) publish(tmp string, now time.Time) error {
	unlock, err := w.s.lockFolder(true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Rename(tmp, w.s.path(w.name, w.kind)); err != nil {
		return err
	}
	w.removeOtherKind(now)
	return nil
}

// removeOtherKind deletes the snapshot of the same name and the other kind,
// unless it is newer than this one (a concurrent save of the other kind).
// A crash before this leaves both; find takes the newer.
func (w *SnapshotWriter) removeOtherKind(now time.Time) {
	other := SnapshotRaw
	if w.kind == SnapshotRaw {
		other = SnapshotJSON
	}
	p := w.s.path(w.name, other)
	if fi, err := os.Stat(p); err == nil && !fi.ModTime().After(now) {
		os.Remove(p)
	}
}

// Abort discards what was written; the snapshot keeps its old value. After
// Close it does nothing, so it can be deferred.
func (w *SnapshotWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	err := w.f.Close()
	return errors.Join(err, os.Remove(w.f.Name()))
}
