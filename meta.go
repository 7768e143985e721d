package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SchemaVersion is the version of the file format, written to the meta file.
const SchemaVersion = "1.0.0"

// Meta is the summary kept in <name>_meta.json. It is a cache for people and
// tools: the JSONL files are the truth, and Open rebuilds the counts from them.
type Meta struct {
	Name           string    // experiment_name
	StartedAt      time.Time // when the checkpoint was first created
	LastUpdated    time.Time
	TotalItems     int // items in the latest Iterate
	CompletedItems int // distinct keys whose latest outcome is a result
	FailedItems    int // distinct keys whose latest outcome is an error
	SchemaVersion  string
}

// metaFile is the file's exact shape. The Python library refuses a meta file
// with any other field, so nothing else goes in.
type metaFile struct {
	ExperimentName string `json:"experiment_name"`
	StartedAt      string `json:"started_at"`
	LastUpdated    string `json:"last_updated"`
	TotalItems     int    `json:"total_items"`
	CompletedItems int    `json:"completed_items"`
	FailedItems    int    `json:"failed_items"`
	SchemaVersion  string `json:"schema_version"`
}

func (m Meta) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(metaFile{
		ExperimentName: m.Name,
		StartedAt:      string(appendTimestamp(nil, m.StartedAt)),
		LastUpdated:    string(appendTimestamp(nil, m.LastUpdated)),
		TotalItems:     m.TotalItems,
		CompletedItems: m.CompletedItems,
		FailedItems:    m.FailedItems,
		SchemaVersion:  m.SchemaVersion,
	}, "", "  ")
	return append(b, '\n'), err
}

// readMeta reads a meta file. An empty or unparseable file is an error: the
// caller rebuilds the meta from the JSONL files.
func readMeta(path string) (Meta, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Meta{}, err
	}
	if len(b) == 0 {
		return Meta{}, errors.New("meta file is empty")
	}
	var f metaFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Meta{}, err
	}
	m := Meta{
		Name:           f.ExperimentName,
		TotalItems:     f.TotalItems,
		CompletedItems: f.CompletedItems,
		FailedItems:    f.FailedItems,
		SchemaVersion:  f.SchemaVersion,
	}
	m.StartedAt, _ = parseTimestamp([]byte(f.StartedAt))
	m.LastUpdated, _ = parseTimestamp([]byte(f.LastUpdated))
	return m, nil
}

// writeFileAtomic replaces path with b so that a crash at any moment leaves
// either the old file or the new one, never an empty or partial file: write a
// temporary file, sync it, rename it over path, and sync the folder so the
// rename itself is durable. rename is os.Rename but in fault tests.
func writeFileAtomic(path string, b []byte, rename func(oldpath, newpath string) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file private; the meta is as readable as the rest.
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if _, err = tmp.Write(b); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeTemps deletes the temporary files that writeFileAtomic left beside
// path when its process died before the rename. The caller holds the lock,
// so no other runner is writing one.
func removeTemps(path string, log *slog.Logger) {
	dir, prefix := filepath.Dir(path), filepath.Base(path)+".tmp-"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		// Only CreateTemp's names: the prefix and its random digits. Another
		// checkpoint's files may share the prefix ("a_meta.json.tmp-b_...").
		if e.Type().IsRegular() && isTempName(e.Name(), prefix) {
			p := filepath.Join(dir, e.Name())
			if err := os.Remove(p); err == nil {
				log.Info("checkpoint: removed a temporary file left by a crash", "file", p)
			}
		}
	}
}

func isTempName(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Meta returns the checkpoint's summary as of now.
func (r *Runner[K, T]) Meta() Meta {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.metaLocked()
}

func (r *Runner[K, T]) metaLocked() Meta {
	return Meta{
		Name:           r.name,
		StartedAt:      r.startedAt,
		LastUpdated:    time.Now(),
		TotalItems:     int(r.total.Load()),
		CompletedItems: r.completed,
		FailedItems:    r.failed,
		SchemaVersion:  SchemaVersion,
	}
}

// maybeWriteMeta refreshes the meta file at most about once a second, on a
// goroutine of its own: the rewrite takes milliseconds (two fsyncs), and the
// save that happened to cross the second used to pay them. No save waits for
// it; Close waits for it to end (see metaWriters). The record is already
// safe, so a failure here is logged, not returned.
func (r *Runner[K, T]) maybeWriteMeta() {
	if time.Now().UnixNano() < r.metaDue.Load() || !r.metaBusy.CompareAndSwap(false, true) {
		return // not due, or a writer is under way
	}
	// Started under the read lock, after checking closed: Close sets closed
	// under the write lock before it waits for the writers, so every Add
	// happens before that Wait.
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		r.metaBusy.Store(false)
		return
	}
	r.metaWriters.Add(1)
	r.mu.RUnlock()
	go func() {
		defer r.metaWriters.Done()
		defer r.metaBusy.Store(false)
		// Never wait for the lock: whoever holds it (Close, Clear, Open) is
		// writing the meta file already.
		if !r.metaMu.TryLock() {
			return
		}
		defer r.metaMu.Unlock()
		if time.Now().UnixNano() < r.metaDue.Load() {
			return
		}
		if err := r.writeMetaLocked(); err != nil {
			r.log.Warn("checkpoint: could not update the meta file", "file", r.metaPath, "err", err)
			r.metaDue.Store(time.Now().Add(time.Second).UnixNano()) // retry later, not on every save
		}
	}()
}

func (r *Runner[K, T]) writeMeta() error {
	r.metaMu.Lock()
	defer r.metaMu.Unlock()
	return r.writeMetaLocked()
}

// writeMetaLocked writes the meta file atomically. r.metaMu must be held.
// Only the counts are read under the runner's lock; they are encoded after
// it, so that a save never waits for the encoding (nor for the writer's
// thread, should the kernel switch it out while it holds the lock).
func (r *Runner[K, T]) writeMetaLocked() error {
	r.mu.RLock()
	closed := r.closed
	m := r.metaLocked()
	r.mu.RUnlock()
	if closed {
		return nil
	}
	b, err := m.marshal()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.metaPath, b, r.rename); err != nil {
		return fmt.Errorf("checkpoint: write meta: %w", err)
	}
	r.metaWritten = time.Now()
	r.metaDue.Store(r.metaWritten.Add(time.Second).UnixNano())
	return nil
}
