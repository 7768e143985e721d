package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
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
	info            Info
	results, errors *journal
	ix              keyIndex // nil until loaded

	mu     sync.Mutex
	err    error
	closed bool
	active int // streams running: the index is released when the last ends
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
	return inspect(dir, name, false)
}

// inspect is Inspect; text makes it index keys as text even when they are
// all integers (see keyIndex), for Watch, which adds whatever keys come.
func inspect(dir, name string, text bool) (*View, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	v := &View{info: Info{Name: name, Dir: dir}}
	if err := v.load(text); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *View) load(text bool) error {
	dir, name := v.info.Dir, v.info.Name
	var err error
	if v.results, v.errors, err = openPair(dir, name); err != nil {
		return err
	}
	metaPath := filepath.Join(dir, name+"_meta.json")
	meta, merr := readMeta(resolvePath(dir, name, metaPath))
	if v.errors.f == nil && v.results.f == nil && errors.Is(merr, os.ErrNotExist) {
		return fmt.Errorf("checkpoint: %q in %s: %w", name, dir, ErrNoCheckpoint)
	}
	ix, resRecords, errRecords, err := loadKeyIndex(dir, name, v.results, v.errors, text)
	if err != nil {
		return err
	}
	v.ix = ix
	now := time.Now()
	in := &v.info
	in.Completed, in.Failed = ix.counts()
	in.Results = JournalInfo{Path: v.results.path, Size: v.results.size, Records: resRecords}
	in.Errors = JournalInfo{Path: v.errors.path, Size: v.errors.size, Records: errRecords}
	liveErrors := 0
	if errRecords > 0 {
		for s := range ix.slots {
			if !s.done() {
				liveErrors += s.attempts()
			}
		}
	}
	in.Results.Superseded = in.Results.Records - in.Completed
	in.Errors.Superseded = max(0, in.Errors.Records-liveErrors)
	if merr == nil {
		in.Total = meta.TotalItems
		in.StartedAt = meta.StartedAt
		in.LastUpdated = meta.LastUpdated
	}
	if last := ix.lastTime(); last.After(in.LastUpdated) || merr != nil {
		in.LastUpdated = last
	}
	if in.StartedAt.IsZero() {
		in.StartedAt = firstTimestamp(v.results, v.errors)
	}
	since := now.Add(-time.Minute)
	if in.StartedAt.After(since) {
		since = in.StartedAt
	}
	if secs := now.Sub(since).Seconds(); secs > 0 {
		n := recentRecords(v.results, since) + recentRecords(v.errors, since)
		in.Rate = float64(n) / max(secs, 1)
	}
	in.Running, err = lockHeld(filepath.Join(dir, name+".lock"))
	if err == nil && !in.Running {
		in.Running, err = stepRunning(dir, name) // a step runs under its pipeline's lock
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	in.Size, in.SideFiles = filesOf(dir, name)
	return nil
}

// openPair opens both journals read-only as one consistent pair: a change
// (Compact, Retry...) that commits between the two opens would otherwise
// give the old errors with the new results. It checks after opening that
// each file is still the one a reader should read, and opens them again if
// not.
func openPair(dir, name string) (results, errs *journal, err error) {
	for attempt := 0; ; attempt++ {
		if errs, err = openReadOnly(dir, name, "_errors.jsonl"); err != nil {
			return nil, nil, err
		}
		if results, err = openReadOnly(dir, name, "_results.jsonl"); err != nil {
			errs.close()
			return nil, nil, err
		}
		if attempt == 10 || (errs.current(dir, name) && results.current(dir, name)) {
			return results, errs, nil
		}
		errs.close()
		results.close()
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

// Close closes the View's files and gives back the memory of its index.
// Streams started afterwards report an error through Err; one running on
// another goroutine stops at its next read with an error, and the index is
// released when it ends.
func (v *View) Close() error {
	var err error
	for _, j := range []*journal{v.results, v.errors} {
		if j != nil && j.f != nil {
			err = errors.Join(err, j.f.Close())
		}
	}
	v.mu.Lock()
	v.closed = true
	v.releaseIfIdle()
	v.mu.Unlock()
	return err
}

// releaseIfIdle releases a closed View's index once no stream reads it: its
// tables may be memory mapped apart from the Go heap (tableMem), which the
// collector neither counts nor hurries to free. v.mu must be held.
func (v *View) releaseIfIdle() {
	if v.closed && v.active == 0 && v.ix != nil {
		v.ix.release()
		v.ix = nil
	}
}

// begin registers a stream, or reports false if the View is closed.
func (v *View) begin() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		if v.err == nil {
			v.err = fmt.Errorf("checkpoint: view of %q: %w", v.info.Name, ErrClosed)
		}
		return false
	}
	v.active++
	return true
}

func (v *View) end() {
	v.mu.Lock()
	v.active--
	v.releaseIfIdle()
	v.mu.Unlock()
}

// latest calls fn for every line of j that is its key's latest outcome
// (a result when results, an error otherwise), in file order, with the
// line's record. The record and line are only valid during the call.
func (v *View) latest(j *journal, results bool, fn func(rec record, line []byte, s slot) bool) {
	if j == nil || j.f == nil || j.size == 0 {
		return
	}
	if !v.begin() {
		return
	}
	defer v.end()
	var sc lineScanner
	var c cursor
	stop := errors.New("stop")
	_, err := sc.scan(j.f, 0, j.size, func(off int64, lineNo int, line []byte) error {
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		rec, ok := parseLoaded(line)
		if !ok {
			return nil // a blank line: set aside by a repair
		}
		s, _ := v.ix.near(rec.key, &c)
		if s.done() != results || s.offset() != off {
			return nil // superseded; or a key load refused: the file changed since
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

// parseLoaded is parseRecord for a line that a load has read already, so
// known to be whole: parseRecord checks every byte of the result for that,
// which was the largest cost of streaming results. The key is the one
// parseRecord reads: a result that holds a "key" field, or an escape that
// might spell one, goes the long way.
func parseLoaded(line []byte) (record, bool) {
	rec, ok := parseCompact(line)
	if !ok {
		return parseRecord(line)
	}
	if bytes.IndexByte(rec.body, '\\') >= 0 || bytes.Contains(rec.body, []byte(`"key"`)) {
		return parseRecord(line)
	}
	rec.whole = true
	return rec, true
}

// Results returns an iterator over the latest result of every completed
// key, in the order they were saved: the key's JSON text and the result's
// JSON, a fresh copy. It streams from disk; memory does not grow with the
// results. An I/O error stops it and is reported by Err.
func (v *View) Results() iter.Seq2[string, json.RawMessage] {
	return func(yield func(string, json.RawMessage) bool) {
		for key, result := range v.RawResults() {
			if !yield(string(key), slices.Clone(json.RawMessage(result))) {
				return
			}
		}
	}
}

// RawResults is Results without copies, for a caller that writes each
// result out and keeps nothing, such as the results command: the key's
// and the result's JSON are the View's read buffer, valid only until the
// loop body returns, and must not be modified. It allocates nothing per
// result.
func (v *View) RawResults() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		v.latest(v.results, true, func(rec record, _ []byte, _ slot) bool {
			return yield(rec.key, rec.body)
		})
	}
}

// Failures returns an iterator over the keys whose latest outcome is an
// error, oldest failure first, with that error. Keys are their JSON text.
// An I/O error stops it and is reported by Err.
func (v *View) Failures() iter.Seq[Failure[string]] {
	return func(yield func(Failure[string]) bool) {
		v.latest(v.errors, false, func(rec record, line []byte, s slot) bool {
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
