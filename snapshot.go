package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The kinds of snapshot in SnapshotInfo.
const (
	SnapshotJSON = "json" // saved with Save: a JSON value
	SnapshotRaw  = "raw"  // written with Create: bytes
)

// SnapshotInfo describes a snapshot.
type SnapshotInfo struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	SavedAt time.Time `json:"saved_at"`
	Kind    string    `json:"kind"` // SnapshotJSON or SnapshotRaw
}

// Snapshots is a folder of named values that survive crashes whole: a value
// saved under a name is seen, after any crash, as it was before the save or
// as it is after it, never a mix. A JSON value is kept as <name>.json (plain
// JSON), raw bytes as <name>.raw.
//
// Snapshots is safe for concurrent use, by goroutines and by processes: the
// last save of a name wins. It holds no resources and needs no closing.
type Snapshots struct {
	dir string
	log *slog.Logger
	mu  sync.RWMutex // lockFolder's lock where there is no flock(2)
}

const maxSnapshotName = 200 // bytes; the file name adds a suffix and must fit in 255

// OpenSnapshots opens the snapshots kept in the folder "snapshots" inside
// dir (the folder of the checkpoints). The folder is made on the first save.
// It deletes temporary files left by writers that crashed or were abandoned.
// WithLogger is the only Option that applies.
func OpenSnapshots(dir string, opts ...Option) (*Snapshots, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return openSnapshotsIn(filepath.Join(dir, "snapshots"), o.logger)
}

func openSnapshotsIn(dir string, log *slog.Logger) (*Snapshots, error) {
	s := &Snapshots{dir: dir, log: log}
	if err := s.removeTemps(); err != nil {
		return nil, fmt.Errorf("checkpoint: snapshots: %w", err)
	}
	return s, nil
}

// Dir returns the folder that holds the snapshots.
func (s *Snapshots) Dir() string { return s.dir }

func checkSnapshotName(name string) error {
	if err := checkName(name); err != nil {
		return errors.New("checkpoint: snapshot " + strings.TrimPrefix(err.Error(), "checkpoint: "))
	}
	if len(name) > maxSnapshotName {
		return fmt.Errorf("checkpoint: snapshot name of %d bytes, at most %d", len(name), maxSnapshotName)
	}
	return nil
}

func (s *Snapshots) path(name, kind string) string {
	return filepath.Join(s.dir, name+"."+kind)
}

// Save saves v, encoded as JSON, under name, replacing any snapshot of that
// name once the new one is safely on disk: temporary file, fsync, rename,
// fsync of the folder.
func (s *Snapshots) Save(name string, v any) error {
	if err := checkSnapshotName(name); err != nil {
		return err
	}
	b, err := marshalState(v)
	if err != nil {
		return fmt.Errorf("checkpoint: snapshot %q: %w", name, err)
	}
	w, err := s.create(name, SnapshotJSON)
	if err != nil {
		return err
	}
	if _, err := w.f.Write(b); err != nil {
		w.Abort()
		return fmt.Errorf("checkpoint: snapshot %q: %w", name, err)
	}
	return w.Close()
}

// Load decodes the snapshot called name into v. It reports false, and no
// error, if there is none. A raw snapshot is decoded as JSON too.
func (s *Snapshots) Load(name string, v any) (bool, error) {
	if err := checkSnapshotName(name); err != nil {
		return false, err
	}
	f, _, err := s.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return true, fmt.Errorf("checkpoint: snapshot %q: %w", name, err)
	}
	return true, nil
}

// Exists reports whether there is a snapshot called name. A name that is not
// valid, or a folder that cannot be read, reports false.
func (s *Snapshots) Exists(name string) bool {
	if checkSnapshotName(name) != nil {
		return false
	}
	_, _, err := s.find(name)
	return err == nil
}

// Open opens the snapshot called name for reading, whatever its kind. The
// error wraps fs.ErrNotExist if there is none. The file stays readable to
// the end even if the snapshot is replaced or deleted meanwhile.
func (s *Snapshots) Open(name string) (*os.File, error) {
	if err := checkSnapshotName(name); err != nil {
		return nil, err
	}
	f, _, err := s.open(name)
	return f, err
}

// open opens the newest file of name.
func (s *Snapshots) open(name string) (*os.File, string, error) {
	return lookTwice(s, name, s.open1)
}

func (s *Snapshots) open1(name string) (*os.File, string, error) {
	_, kind, err := s.find1(name)
	if err != nil {
		return nil, "", err
	}
	f, err := os.Open(s.path(name, kind))
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: snapshot %q: %w", name, err)
	}
	return f, kind, nil
}

// find returns the file of name as open does, without opening it.
func (s *Snapshots) find(name string) (fs.FileInfo, string, error) {
	return lookTwice(s, name, s.find1)
}

// lookTwice looks for name once and, if that finds nothing, again with the
// folder locked against publishing. A save of the other kind can replace
// the file between looking for it and opening it, or between the looks at
// the two kinds; under the lock no save is between the two.
func lookTwice[T any](s *Snapshots, name string, look func(string) (T, string, error)) (T, string, error) {
	v, kind, err := look(name)
	if !errors.Is(err, fs.ErrNotExist) {
		return v, kind, err
	}
	unlock, lerr := s.lockFolder(false)
	if errors.Is(lerr, fs.ErrNotExist) {
		return v, kind, err // no folder: no snapshot
	}
	if lerr != nil {
		return v, "", fmt.Errorf("checkpoint: snapshot %q: %w", name, lerr)
	}
	defer unlock()
	return look(name)
}

// find1 looks once for the file of name: its kind's file, or if a crash
// between publishing one kind and deleting the other left both, the newer.
func (s *Snapshots) find1(name string) (fs.FileInfo, string, error) {
	j, jerr := os.Stat(s.path(name, SnapshotJSON))
	r, rerr := os.Stat(s.path(name, SnapshotRaw))
	switch {
	case jerr == nil && rerr == nil:
		if r.ModTime().After(j.ModTime()) {
			return r, SnapshotRaw, nil
		}
		return j, SnapshotJSON, nil
	case jerr == nil:
		return j, SnapshotJSON, nil
	case rerr == nil:
		return r, SnapshotRaw, nil
	case !errors.Is(jerr, fs.ErrNotExist):
		return nil, "", fmt.Errorf("checkpoint: snapshot %q: %w", name, jerr)
	case !errors.Is(rerr, fs.ErrNotExist):
		return nil, "", fmt.Errorf("checkpoint: snapshot %q: %w", name, rerr)
	}
	return nil, "", fmt.Errorf("checkpoint: no snapshot %q in %s: %w", name, s.dir, fs.ErrNotExist)
}

// List returns every snapshot, by name. A missing folder is an empty list.
func (s *Snapshots) List() ([]SnapshotInfo, error) {
	// With the folder locked against publishing: a read of the folder while
	// a save replaced one kind of a name with the other could pass the new
	// file's entry and miss the old one's.
	unlock, err := s.lockFolder(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: snapshots: %w", err)
	}
	defer unlock()
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: snapshots: %w", err)
	}
	byName := map[string]SnapshotInfo{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name, kind, ok := splitSnapshotFile(e.Name())
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		info := SnapshotInfo{Name: name, Size: fi.Size(), SavedAt: fi.ModTime(), Kind: kind}
		if old, dup := byName[name]; dup && !(kind == SnapshotRaw && info.SavedAt.After(old.SavedAt)) {
			continue // the same rule as find
		}
		byName[name] = info
	}
	out := make([]SnapshotInfo, 0, len(byName))
	for _, info := range byName {
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func splitSnapshotFile(file string) (name, kind string, ok bool) {
	for _, k := range []string{SnapshotJSON, SnapshotRaw} {
		if n, found := strings.CutSuffix(file, "."+k); found && n != "" {
			return n, k, true
		}
	}
	return "", "", false
}

// Delete deletes the snapshot called name. Deleting one that does not exist
// is not an error.
func (s *Snapshots) Delete(name string) error {
	if err := checkSnapshotName(name); err != nil {
		return err
	}
	var err error
	removed := false
	for _, k := range []string{SnapshotJSON, SnapshotRaw} {
		rerr := os.Remove(s.path(name, k))
		switch {
		case rerr == nil:
			removed = true
		case !errors.Is(rerr, fs.ErrNotExist):
			err = errors.Join(err, rerr)
		}
	}
	if removed {
		err = errors.Join(err, syncDir(s.dir))
	}
	if err != nil {
		return fmt.Errorf("checkpoint: delete snapshot %q: %w", name, err)
	}
	return nil
}

// ReadSnapshots lists the snapshots in dir without changing anything (no
// cleanup of temporary files): it is for tools that look while jobs run.
// flow "" lists those of OpenSnapshots(dir), a flow's name that flow's own.
func ReadSnapshots(dir, flow string) ([]SnapshotInfo, error) {
	folder := filepath.Join(dir, "snapshots")
	if flow != "" {
		if err := checkName(flow); err != nil {
			return nil, err
		}
		folder = flowSnapsDir(dir, flow)
	}
	return (&Snapshots{dir: folder}).List()
}
