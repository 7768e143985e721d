package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// A View is a read-only look at a checkpoint, possibly one a job is writing
// now: its counts, times and files (Info), and streams of its latest results
// and failures. It is made by Inspect, which never takes the checkpoint's
// lock, writes nothing and repairs nothing.
//
// A View sees each journal as it was when Inspect read it: the whole lines
// then present. A torn last line of a live file is a record being written
// and is left out, not an error.
//
// Keys in a View are their JSON text as written in the file: "42" (with the
// quotes) from the Python library, which writes str(key), 42 from a Go
// runner with int keys. KeyText gives the text they are matched by.
//
// A View's methods are safe for concurrent use. Close releases its files.
type View struct {
	info Info
	r    *Runner[string, json.RawMessage] // the index, over KeyText keys

	mu  sync.Mutex
	err error
}

// Info is what Inspect finds out about a checkpoint.
type Info struct {
	Name        string
	Dir         string
	Completed   int       // keys whose latest outcome is a result
	Failed      int       // keys whose latest outcome is an error
	Total       int       // items in the latest Iterate, from the meta file; 0 if unknown
	StartedAt   time.Time // from the meta file, else the first record's time
	LastUpdated time.Time // the latest record's time (the meta file's if there is none)
	// Running reports whether a Runner holds the checkpoint's lock now.
	// The Python library takes no lock: its jobs are never seen running.
	Running bool
	// Rate is records (results and errors) per second over the minute
	// before Inspect, or since StartedAt if that is later.
	Rate float64
	Size int64 // bytes on disk of all the checkpoint's files

	Results JournalInfo
	Errors  JournalInfo
	// SideFiles are the .torn and .corrupt files that repairs left beside
	// the journals (see Open and WithSkipCorrupt).
	SideFiles []string
}

// JournalInfo describes one of a checkpoint's two JSONL files.
type JournalInfo struct {
	Path    string // "" if the file does not exist
	Size    int64  // bytes of the whole lines read
	Records int
	// Superseded records are not any key's latest outcome: a result replaced
	// by a later result or error, an error of a key that later succeeded.
	// Compact removes them. All errors of a failed key count as live: they
	// are its attempts.
	Superseded int
}

// ErrNoCheckpoint is returned (wrapped) for a name that has no files in the
// folder. It matches fs.ErrNotExist too.
var ErrNoCheckpoint = fmt.Errorf("no such checkpoint: %w", fs.ErrNotExist)

// Inspect reads the checkpoint called name in dir. It never takes the lock,
// so it works while a job runs and on folders it cannot write to; it costs
// about what Open costs. Close the View when done.
func Inspect(dir, name string) (*View, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	v := &View{info: Info{Name: name, Dir: dir}}
	if err := v.load(); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// newView makes the Runner that holds a View's index, without opening it:
// no lock, and keys are KeyText strings.
func newView(dir, name string) *Runner[string, json.RawMessage] {
	return &Runner[string, json.RawMessage]{
		name:     name,
		dir:      dir,
		log:      slog.New(slog.DiscardHandler),
		keys:     keyTextCodec(),
		metaPath: filepath.Join(dir, name+"_meta.json"),
	}
}

func (v *View) load() error {
	dir, name := v.info.Dir, v.info.Name
	r := newView(dir, name)
	v.r = r
	if err := r.openPair(); err != nil {
		return err
	}
	meta, merr := readMeta(resolvePath(dir, name, r.metaPath))
	if r.errors.f == nil && r.results.f == nil && errors.Is(merr, os.ErrNotExist) {
		return fmt.Errorf("checkpoint: %q in %s: %w", name, dir, ErrNoCheckpoint)
	}
	resRecords, errRecords, err := r.loadIndex()
	if err != nil {
		return err
	}
	now := time.Now()
	in := &v.info
	in.Completed, in.Failed = r.completed, r.failed
	in.Results = JournalInfo{Path: r.results.path, Size: r.results.size, Records: resRecords}
	in.Errors = JournalInfo{Path: r.errors.path, Size: r.errors.size, Records: errRecords}
	liveErrors := 0
	for _, s := range r.index.all {
		if !s.done() {
			liveErrors += s.attempts()
		}
	}
	in.Results.Superseded = in.Results.Records - r.completed
	in.Errors.Superseded = max(0, in.Errors.Records-liveErrors)
	if merr == nil {
		in.Total = meta.TotalItems
		in.StartedAt = meta.StartedAt
		in.LastUpdated = meta.LastUpdated
	}
	if r.lastTS.After(in.LastUpdated) || merr != nil {
		in.LastUpdated = r.lastTS
	}
	if in.StartedAt.IsZero() {
		in.StartedAt = firstTimestamp(r.results, r.errors)
	}
	since := now.Add(-time.Minute)
	if in.StartedAt.After(since) {
		since = in.StartedAt
	}
	if secs := now.Sub(since).Seconds(); secs > 0 {
		n := recentRecords(r.results, since) + recentRecords(r.errors, since)
		in.Rate = float64(n) / max(secs, 1)
	}
	in.Running, err = lockHeld(filepath.Join(dir, name+".lock"))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	in.Size, in.SideFiles = filesOf(dir, name)
	return nil
}

// openPair opens both journals as one consistent pair: a change (Compact,
// Retry...) that commits between the two opens would otherwise give the old
// errors with the new results. It checks after opening that each file is
// still the one a reader should read, and opens them again if not.
func (r *Runner[K, T]) openPair() error {
	for attempt := 0; ; attempt++ {
		var err error
		if r.errors, err = openReadOnly(r.dir, r.name, "_errors.jsonl"); err != nil {
			return err
		}
		if r.results, err = openReadOnly(r.dir, r.name, "_results.jsonl"); err != nil {
			r.errors.close()
			return err
		}
		if attempt == 10 || (r.errors.current(r.dir, r.name) && r.results.current(r.dir, r.name)) {
			return nil
		}
		r.errors.close()
		r.results.close()
	}
}

// current reports whether j's open file is still what a reader should read
// for its path.
func (j *journal) current(dir, name string) bool {
	src := resolvePath(dir, name, j.path)
	if j.f == nil {
		if src == "" {
			return true
		}
		_, err := os.Stat(src)
		return errors.Is(err, os.ErrNotExist)
	}
	f, ok := j.f.(*os.File)
	if src == "" || !ok {
		return false
	}
	now, err1 := os.Stat(src)
	was, err2 := f.Stat()
	return err1 == nil && err2 == nil && os.SameFile(now, was)
}

func (j *journal) close() {
	if j.f != nil {
		j.f.Close()
	}
}

// openReadOnly opens a journal for reading, or returns one without a file
// if it does not exist.
func openReadOnly(dir, name, suffix string) (*journal, error) {
	path := filepath.Join(dir, name+suffix)
	j := &journal{path: path, readOnly: true}
	src := resolvePath(dir, name, path)
	if src == "" {
		return j, nil
	}
	f, err := os.Open(src)
	if err != nil && src != path && errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(path) // renamed meanwhile
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return j, nil
	case err != nil:
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	j.f = f
	return j, nil
}

func (j *journal) sizeHintsOrZero() (lines, keyBytes int) {
	if j.f == nil {
		return 0, 0
	}
	return j.sizeHints()
}

// readOnlyEnd is where a read-only load stops: past the last whole record,
// before a torn line or damaged lines at the end, which a live file's writer
// may be finishing and which the next Open repairs.
func readOnlyEnd(good int64, held *corruptLines) int64 {
	if len(held.spans) > 0 {
		return held.spans[0].off
	}
	return good
}

// KeyText returns the text a key is matched by, given its JSON as written in
// a checkpoint's files: a JSON string's contents (the Python library writes
// every key as a string), otherwise the JSON itself. So "42" and 42 are the
// same key, as they are to a Runner with int or string keys.
func KeyText(keyJSON string) string {
	s, err := keyText([]byte(keyJSON))
	if err != nil {
		return keyJSON
	}
	return s
}

func keyText(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		return decodeStringValue(raw)
	}
	if len(raw) == 0 {
		return "", errors.New("empty key")
	}
	return string(raw), nil
}

// keyTextCodec decodes keys to their KeyText, for Views and the commands
// that change files: they do not know the key type of the runner that wrote
// the checkpoint.
func keyTextCodec() keyCodec[string] {
	return keyCodec[string]{
		decode: func(raw []byte) (string, error) { return keyText(raw) },
		decodeIn: func(raw []byte, a *keyArena) (string, error) {
			if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
				return a.string(raw[1 : len(raw)-1]), nil
			}
			if len(raw) > 0 && raw[0] != '"' && raw[0] != ' ' {
				return a.string(raw), nil
			}
			return keyText(raw)
		},
		hash: newKeyHash[string](reflect.TypeFor[string]()),
	}
}

// lookupText is keyText without a copy in the common case, for a lookup
// that does not keep the string.
func lookupText(raw []byte) (string, error) {
	switch {
	case len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0:
		if len(raw) == 2 {
			return "", nil
		}
		return unsafe.String(&raw[1], len(raw)-2), nil
	case len(raw) > 0 && raw[0] != '"' && raw[0] != ' ':
		return unsafe.String(&raw[0], len(raw)), nil
	}
	return keyText(raw)
}

// Info returns what Inspect found.
func (v *View) Info() Info {
	in := v.info
	in.SideFiles = slices.Clone(in.SideFiles)
	return in
}

// Err returns the first error that Results or Failures met, or nil. They
// stop at an error; check Err after the loop, as with bufio.Scanner.
func (v *View) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *View) setErr(err error) {
	v.mu.Lock()
	if v.err == nil {
		v.err = err
	}
	v.mu.Unlock()
}

// Close closes the View's files. Streams started afterwards report an error
// through Err.
func (v *View) Close() error {
	var err error
	for _, j := range []*journal{v.r.results, v.r.errors} {
		if j != nil && j.f != nil {
			err = errors.Join(err, j.f.Close())
		}
	}
	return err
}

// latest calls fn for every line of j that is its key's latest outcome
// (a result when results, an error otherwise), in file order.
func (v *View) latest(j *journal, results bool, fn func(rec record, line []byte, s slot) bool) {
	if j == nil || j.f == nil || j.size == 0 {
		return
	}
	var sc lineScanner
	var c cursor
	stop := errors.New("stop")
	_, err := sc.scan(j.f, 0, j.size, func(off int64, lineNo int, line []byte) error {
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		rec, ok := parseRecord(line)
		if !ok {
			return nil // a blank line: set aside by a repair
		}
		k, err := lookupText(rec.key)
		if err != nil {
			return nil // load refused such lines: the file changed since
		}
		s, _ := v.r.index.getNear(k, &c)
		if s.done() != results || s.offset() != off {
			return nil
		}
		if !fn(rec, line, s) {
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		v.setErr(fmt.Errorf("checkpoint: read %s: %w", j.path, err))
	}
}

// Results returns an iterator over the latest result of every completed
// key, in the order they were saved: the key's JSON text and the result's
// JSON, a fresh copy. It streams from disk; memory does not grow with the
// results. An I/O error stops it and is reported by Err.
func (v *View) Results() iter.Seq2[string, json.RawMessage] {
	return func(yield func(string, json.RawMessage) bool) {
		v.latest(v.r.results, true, func(rec record, _ []byte, _ slot) bool {
			return yield(string(rec.key), slices.Clone(json.RawMessage(rec.body)))
		})
	}
}

// Failures returns an iterator over the keys whose latest outcome is an
// error, oldest failure first, with that error. Keys are their JSON text.
// An I/O error stops it and is reported by Err.
func (v *View) Failures() iter.Seq[Failure[string]] {
	return func(yield func(Failure[string]) bool) {
		v.latest(v.r.errors, false, func(rec record, line []byte, s slot) bool {
			msg, ts := errorFields(line)
			return yield(Failure[string]{Key: string(rec.key), Error: msg, Attempts: s.attempts(), Time: ts})
		})
	}
}

// firstTimestamp is the earliest of the journals' first records' times.
func firstTimestamp(js ...*journal) time.Time {
	var first time.Time
	for _, j := range js {
		if j.f == nil || j.size == 0 {
			continue
		}
		line, err := j.readLine(0)
		if err != nil {
			continue
		}
		if rec, ok := parseRecord(bytes.TrimSuffix(line, []byte{'\r'})); ok {
			if t, ok := parseTimestamp(rec.ts); ok && (first.IsZero() || t.Before(first)) {
				first = t
			}
		}
	}
	return first
}

// recentRecords counts the records of j stamped at or after since, reading
// back from the end: the journals are in time order.
func recentRecords(j *journal, since time.Time) int {
	if j.f == nil || j.size == 0 {
		return 0
	}
	const block = 64 << 10
	buf := make([]byte, 0, block)
	var carry []byte // the start of a line whose beginning is in an earlier block
	n := 0
	for end := j.size; end > 0; {
		from := max(0, end-block)
		buf = buf[:end-from]
		if _, err := j.f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
			return n
		}
		chunk := append(buf, carry...)
		// Lines that are whole in chunk, last first; the first may be cut.
		lines := bytes.Split(bytes.TrimSuffix(chunk, []byte{'\n'}), []byte{'\n'})
		startAt := 0
		if from > 0 {
			startAt = 1
			carry = slices.Clone(lines[0])
		}
		for i := len(lines) - 1; i >= startAt; i-- {
			rec, ok := parseRecord(bytes.TrimSuffix(lines[i], []byte{'\r'}))
			if !ok {
				continue
			}
			t, ok := parseTimestamp(rec.ts)
			if !ok {
				continue
			}
			if t.Before(since) {
				return n
			}
			n++
		}
		end = from
	}
	return n
}

// filesOf returns the bytes on disk of a checkpoint's files and the paths
// of its side files.
func filesOf(dir, name string) (size int64, side []string) {
	for _, suffix := range []string{"_results.jsonl", "_errors.jsonl", "_meta.json", ".lock",
		"_results.jsonl.torn", "_errors.jsonl.torn", "_results.jsonl.corrupt", "_errors.jsonl.corrupt"} {
		p := filepath.Join(dir, name+suffix)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		size += fi.Size()
		if filepath.Ext(suffix) == ".torn" || filepath.Ext(suffix) == ".corrupt" {
			side = append(side, p)
		}
	}
	return size, side
}
