package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrUnknownKey is returned (wrapped, with the key) by Forget for a key that
// has no outcome in the checkpoint.
var ErrUnknownKey = errors.New("no outcome for key")

// Retry makes the failed keys for which match returns true eligible again,
// even those out of attempts: it removes their outcomes (their errors, and
// any older result), so the next run does them as new, their attempts
// counted from zero. match sees each failure with its key's JSON text (see
// KeyText). It returns the number of keys retried.
func Retry(dir, name string, match func(Failure[string]) bool) (n int, err error) {
	err = edit(dir, name, func(e *editor) error {
		drop := map[string]struct{}{}
		v := &View{results: e.results, errors: e.errors, ix: e.ix}
		for f := range v.Failures() {
			if match(f) {
				drop[KeyText(f.Key)] = struct{}{}
			}
		}
		if err := v.Err(); err != nil {
			return err
		}
		n = len(drop)
		if n == 0 {
			return nil
		}
		e.failed -= n
		_, err := e.rewriteWithout(drop)
		return err
	})
	return n, err
}

// Forget removes every outcome of the given keys (their KeyText, as people
// type them: "42" for both 42 and "42"), so the next run does them again. If
// any key has no outcome it fails with an error wrapping ErrUnknownKey and
// changes nothing. It returns the number of keys forgotten.
func Forget(dir, name string, keys ...string) (n int, err error) {
	err = edit(dir, name, func(e *editor) error {
		drop := map[string]struct{}{}
		for _, k := range keys {
			s, ok := e.ix.get(k)
			if !ok {
				return fmt.Errorf("checkpoint: %w %q in %q%s", ErrUnknownKey, k, name, e.keyExamples())
			}
			if _, dup := drop[k]; dup {
				continue
			}
			drop[k] = struct{}{}
			if s.done() {
				e.completed--
			} else {
				e.failed--
			}
		}
		n = len(drop)
		if n == 0 {
			return nil
		}
		_, err := e.rewriteWithout(drop)
		return err
	})
	return n, err
}

// Reset moves all the files of name but its lock (journals, meta, repair
// side files, in-flight slots and crash counts, run history and metrics, and
// a flow of the same name with its snapshots, a pipeline of the same name
// with all its steps) into a new folder
// dir/name.bak-<timestamp>/, whose path it returns, so the next run starts
// from zero, crash counts included, with nothing destroyed: the old runs
// stay readable in the backup. With backup false it deletes them instead,
// and returns "". A name that is only a flow (no journals) is reset too.
func Reset(dir, name string, backup bool) (bak string, err error) {
	files := func(e *editor) []string {
		// Whether the name exists, before the lock: a damaged steps file
		// still counts, and is reported below.
		e.pipeline, _ = pipelineFiles(dir, name)
		return append(e.files(), e.path(".renames"), e.path("_pipeline.json"))
	}
	err = editOf(dir, name, files, func(e *editor) error {
		// Under the lock, no pipeline adds a step meanwhile.
		if e.pipeline, err = pipelineFiles(dir, name); err != nil {
			return fmt.Errorf("checkpoint: reset: %w", err)
		}
		paths := e.files()
		if backup {
			bak, err = backupFiles(dir, name, paths)
			return err
		}
		for _, p := range paths {
			if err := os.RemoveAll(p); err != nil { // RemoveAll: _snapshots is a folder
				return fmt.Errorf("checkpoint: reset: %w", err)
			}
		}
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("checkpoint: reset: %w", err)
		}
		return nil
	})
	return bak, err
}

// editor is a checkpoint held for a change: locked, with its index loaded
// and its files repaired as Open repairs them.
type editor struct {
	dir, name         string
	results, errors   *journal
	ix                keyIndex
	pipeline          []string // Reset: the files of a pipeline of the name
	completed, failed int      // after the change
	sameState         bool     // Compact: the meta's last update stays
	// records in each journal, as loaded
	resRecords, errRecords int
}

func (e *editor) path(suffix string) string { return filepath.Join(e.dir, e.name+suffix) }

// files are all the files of the name but its lock, for Reset. A flow or a
// pipeline of the same name shares the lock (flow.go, pipeline.go), so its
// files move too.
func (e *editor) files() []string {
	files := append(runnerFiles(e.dir, e.name), e.pipeline...)
	return append(files, runsPath(e.dir, e.name), metricsPath(e.dir, e.name),
		flowPath(e.dir, e.name), flowMarkerPath(e.dir, e.name), flowSnapsDir(e.dir, e.name))
}

// edit locks the checkpoint, finishes an interrupted change, loads it and
// runs change. Nothing is written unless change writes it.
func edit(dir, name string, change func(*editor) error) error {
	return editOf(dir, name, (*editor).recordFiles, change)
}

// recordFiles are the files whose presence makes a checkpoint of the name
// exist for a change of its records.
func (e *editor) recordFiles() []string {
	return []string{e.path("_results.jsonl"), e.path("_errors.jsonl"), e.path("_meta.json"), e.path(".renames")}
}

// editOf is edit for a name that exists if any of the files of (the
// editor's) files does: Reset moves a flow's files even when the name has
// no checkpoint of its own.
func editOf(dir, name string, files func(*editor) []string, change func(*editor) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	e := &editor{dir: dir, name: name}
	exists := false
	for _, p := range files(e) {
		if _, err := os.Lstat(p); err == nil {
			exists = true
		}
	}
	if !exists {
		return fmt.Errorf("checkpoint: %q in %s: %w", name, dir, ErrNoCheckpoint)
	}
	lock, err := lockFile(e.path(".lock"))
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return fmt.Errorf("checkpoint: %q in %s is held by a running job; try again when it ends: %w", name, dir, ErrLocked)
		}
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer lock.Close()
	for _, pipe := range pipelinesOf(dir, name) {
		l, err := lockFile(lockPath(dir, pipe))
		if err != nil {
			if errors.Is(err, ErrLocked) {
				return fmt.Errorf("checkpoint: %q in %s may be a step of pipeline %q, which a running job holds; try again when it ends: %w", name, dir, pipe, ErrLocked)
			}
			return fmt.Errorf("checkpoint: %w", err)
		}
		defer l.Close()
	}
	log := slog.New(slog.DiscardHandler)
	if err := finishRenames(dir, name, log); err != nil {
		return err
	}
	defer func() {
		for _, j := range []*journal{e.results, e.errors} {
			if j != nil && j.f != nil {
				j.f.Close()
			}
		}
	}()
	o := defaultOptions()
	o.logger = log
	// Journals are opened only if they exist: a change must not create them.
	for _, jp := range []struct {
		j      **journal
		suffix string
	}{{&e.errors, "_errors.jsonl"}, {&e.results, "_results.jsonl"}} {
		p := e.path(jp.suffix)
		if _, err := os.Stat(p); err != nil {
			*jp.j = &journal{path: p}
			continue
		}
		if *jp.j, err = openJournal(p, &o); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	if e.ix, e.resRecords, e.errRecords, err = loadKeyIndex(dir, name, e.results, e.errors, false); err != nil {
		return err
	}
	defer e.ix.release() // mapped tables are not the collector's to free (tableMem)
	e.completed, e.failed = e.ix.counts()
	return change(e)
}

// keyExamples shows a few keys of the checkpoint, for an error about a key
// that is not there.
func (e *editor) keyExamples() string {
	var ex []string
	for k := range e.ix.texts {
		if len(ex) == 3 {
			break
		}
		ex = append(ex, fmt.Sprintf("%q", k))
	}
	if len(ex) == 0 {
		return " (it has no keys)"
	}
	return " (its keys look like " + strings.Join(ex, ", ") + ")"
}

// rewriteWithout removes every line of the keys in drop.
func (e *editor) rewriteWithout(drop map[string]struct{}) (int64, error) {
	keep := func(k string, _ slot, _ int64) bool {
		_, gone := drop[k]
		return !gone
	}
	return e.rewrite(e.copyKept(keep), e.copyKept(keep))
}

// A copier writes the lines of j that a change keeps to w. It returns the
// bytes written and how many records it dropped.
type copier func(j *journal, w *tempWriter) (size int64, dropped int, err error)

// rewrite writes new journals holding what copyResults and copyErrors
// keep of the old ones, and a new meta, and commits them as one batch of
// renames. A nil copier, or one that drops nothing, leaves its journal as
// it is. It returns the new journals' total size.
func (e *editor) rewrite(copyResults, copyErrors copier) (int64, error) {
	var renames [][2]string
	var temps []string
	defer func() {
		if renames == nil { // not committed: remove what was prepared
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	var after int64
	var prepared [][2]string
	for _, step := range []struct {
		j    *journal
		copy copier
	}{{e.results, copyResults}, {e.errors, copyErrors}} {
		if step.j.f == nil {
			continue
		}
		if step.copy == nil {
			after += step.j.size
			continue
		}
		tmp := step.j.path + rewriteSuffix
		temps = append(temps, tmp)
		size, dropped, err := writeTemp(step.j, tmp, step.copy)
		if err != nil {
			return 0, err
		}
		after += size
		if dropped == 0 {
			os.Remove(tmp)
			after += step.j.size - size // size == the journal's, blank lines aside
			continue
		}
		prepared = append(prepared, [2]string{filepath.Base(tmp), filepath.Base(step.j.path)})
	}
	if len(prepared) == 0 {
		return after, nil
	}
	metaTmp := e.path("_meta.json" + rewriteSuffix)
	temps = append(temps, metaTmp)
	if err := e.writeMeta(metaTmp); err != nil {
		return 0, err
	}
	prepared = append(prepared, [2]string{filepath.Base(metaTmp), e.name + "_meta.json"})
	if err := syncDir(e.dir); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	renames = prepared
	return after, commitRenames(e.dir, e.name, renames)
}

// writeTemp writes what copy keeps of j to a new file at path, synced: one
// fsync, once everything is written. It returns copy's figures.
//
// Compact writes hundreds of megabytes here. Left to the kernel, they would
// mostly reach the disk during the fsync, after the copy: so the disk is
// told to start on each writebackStep bytes as soon as they are written,
// and the copy and the disk's writes overlap.
func writeTemp(j *journal, path string, copy copier) (size int64, dropped int, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("checkpoint: %w", cerr)
		}
	}()
	wb := &writebackFile{f: f}
	w := &tempWriter{Writer: bufio.NewWriterSize(wb, 1<<20), wb: wb}
	if size, dropped, err = copy(j, w); err != nil {
		return 0, 0, fmt.Errorf("checkpoint: rewrite %s: %w", j.path, err)
	}
	if err := w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	return size, dropped, nil
}

// copyKept returns a copier that reads every line of j and keeps those for
// which keep returns true, given the key's KeyText, its slot and the
// line's offset.
func (e *editor) copyKept(keep func(k string, s slot, off int64) bool) copier {
	return func(j *journal, w *tempWriter) (size int64, dropped int, err error) {
		var sc lineScanner
		var c cursor
		_, err = sc.scan(j.f, 0, j.size, func(off int64, lineNo int, line []byte) error {
			trimmed := line
			if n := len(trimmed); n > 0 && trimmed[n-1] == '\r' {
				trimmed = trimmed[:n-1]
			}
			rec, ok := parseLoaded(trimmed)
			if !ok {
				return nil // a blank line where a repair set a damaged one aside
			}
			k, err := lookupText(rec.key)
			if err != nil {
				return fmt.Errorf("%s line %d: %w", j.path, lineNo, err)
			}
			s, _ := e.ix.near(rec.key, &c)
			if !keep(k, s, off) {
				dropped++
				return nil
			}
			size += int64(len(line)) + 1
			w.Write(line)
			return w.WriteByte('\n')
		})
		return size, dropped, err
	}
}

// writeMeta writes the meta file for the state after the change to path,
// synced. It keeps the start time and total of the old one.
func (e *editor) writeMeta(path string) error {
	m, err := readMeta(e.path("_meta.json"))
	if err != nil {
		m = Meta{StartedAt: firstTimestamp(e.results, e.errors)}
		if m.StartedAt.IsZero() {
			m.StartedAt = time.Now()
		}
	}
	m.Name = e.name
	if !e.sameState || m.LastUpdated.IsZero() {
		m.LastUpdated = time.Now()
	}
	m.CompletedItems, m.FailedItems = e.completed, e.failed
	if m.SchemaVersion == "" {
		m.SchemaVersion = SchemaVersion
	}
	b, err := m.marshal()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: %w", err)
	}
	return f.Close()
}

const writebackStep = 8 << 20

// writebackFile is a new file that starts the writeback of every
// writebackStep bytes written to it (see writeTemp).
type writebackFile struct {
	f       *os.File
	written int64
	started int64 // bytes whose writeback was started
}

func (w *writebackFile) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.add(int64(n))
	return n, err
}

func (w *writebackFile) add(n int64) {
	w.written += n
	if w.written-w.started >= writebackStep {
		startWriteback(w.f, w.started, w.written-w.started)
		w.started = w.written
	}
}

// tempWriter is where a copier writes: a buffered new file.
type tempWriter struct {
	*bufio.Writer
	wb *writebackFile
}

// copyFrom appends bytes [off, off+n) of src to the file in the kernel
// where it can (copy_file_range(2) on Linux: the bytes do not come up to
// this process and back, which was Compact's largest cost after its index),
// and returns how many it appended: the caller writes the rest itself.
func (w *tempWriter) copyFrom(src appendFile, off, n int64) (int64, error) {
	sf, ok := src.(*os.File)
	if !ok || n < copyFromMin {
		return 0, nil
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	done := copyFileRange(w.wb.f, sf, off, n)
	w.wb.add(done)
	return done, nil
}

// copyFromMin is the smallest run worth a system call of its own.
const copyFromMin = 64 << 10
