package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// fsSource is the viewSource over a folder of checkpoints. It opens every
// file through an os.Root, so no name, symlink or "..", however it is
// spelled, reaches a file outside the folder; it only ever opens files for
// reading and never takes a checkpoint's lock (a running job must be able
// to open its checkpoint at any moment).
//
// A fsSource is safe for concurrent use. Close releases the folder.
type fsSource struct {
	dir  string
	root *os.Root
	now  func() time.Time
}

func newFSSource(dir string) (*fsSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &fsSource{dir: dir, root: root, now: time.Now}, nil
}

func (s *fsSource) Close() error { return s.root.Close() }

// Journal and side-file names, as the library writes them.
const (
	resultsSuffix = "_results.jsonl"
	errorsSuffix  = "_errors.jsonl"
	metaSuffix    = "_meta.json"
)

var sideSuffixes = []string{
	resultsSuffix + ".torn", errorsSuffix + ".torn",
	resultsSuffix + ".corrupt", errorsSuffix + ".corrupt",
}

// names lists the checkpoints in the folder: every NAME with a meta file or
// a journal, in order.
func (s *fsSource) names() ([]string, error) {
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue // reset backups (NAME.bak-*) and anything else
		}
		for _, suf := range []string{metaSuffix, resultsSuffix, errorsSuffix} {
			name, ok := strings.CutSuffix(e.Name(), suf)
			if ok && validName(name) == nil && !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// validName applies the library's rules for a checkpoint name to a name
// that came in a URL.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case strings.ContainsAny(name, "/\\\x00") || strings.ContainsRune(name, os.PathSeparator):
		return fmt.Errorf("name %q has a path separator", name)
	case strings.Contains(name, ".."), name == ".":
		return fmt.Errorf("name %q could reach outside the folder", name)
	case len(name) > 255:
		return errors.New("name too long")
	}
	return nil
}

// exists reports whether name is a checkpoint of the folder.
func (s *fsSource) exists(name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("%w: %v", errNotFound, err)
	}
	for _, suf := range []string{metaSuffix, resultsSuffix, errorsSuffix} {
		if fi, err := s.root.Stat(name + suf); err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", errNotFound, name)
}

func (s *fsSource) Experiments(ctx context.Context) ([]experimentRow, error) {
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	locks := heldLocks()
	rows := make([]experimentRow, len(names))
	// A few checkpoints at a time: each row is a handful of small reads.
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Go(func() {
			for i := range work {
				rows[i] = s.row(names[i], locks)
			}
		})
	}
	for i := range names {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return rows, ctx.Err()
}

func (s *fsSource) Experiment(ctx context.Context, name string) (experimentDetail, error) {
	if err := s.exists(name); err != nil {
		return experimentDetail{}, err
	}
	d := experimentDetail{experimentRow: s.row(name, heldLocks())}
	d.Progress, d.Sampled = s.progress(name)
	d.Runs = []runInfo{}
	d.MetricSeries = map[string][]metricPoint{}
	return d, nil
}

// row builds one line of the Experiments table from the meta file, the
// journals' sizes and the timestamps at their ends.
func (s *fsSource) row(name string, locks lockSet) experimentRow {
	r := experimentRow{Name: name, Kind: "checkpoint"}
	if b, err := s.root.ReadFile(name + metaSuffix); err == nil && len(b) > 0 {
		var m struct {
			StartedAt   string `json:"started_at"`
			LastUpdated string `json:"last_updated"`
			Total       int64  `json:"total_items"`
			Completed   int64  `json:"completed_items"`
			Failed      int64  `json:"failed_items"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			r.Note = "meta file unreadable: " + err.Error()
		}
		r.Total, r.Completed, r.Failed = m.Total, m.Completed, m.Failed
		r.StartedAt = parseTime(m.StartedAt)
		r.LastUpdated = parseTime(m.LastUpdated)
	} else {
		r.Note = "no meta file yet"
	}
	for _, suf := range []string{metaSuffix, resultsSuffix, errorsSuffix} {
		if fi, err := s.root.Stat(name + suf); err == nil {
			r.SizeBytes += fi.Size()
		}
	}
	for _, suf := range sideSuffixes {
		if fi, err := s.root.Stat(name + suf); err == nil && fi.Size() > 0 {
			r.SideFiles = append(r.SideFiles, name+suf)
		}
	}
	if fi, err := s.root.Stat(name + ".lock"); err == nil {
		r.Running = locks.held(fi)
	}
	// The journals are newer than a meta file refreshed once a second.
	var last time.Time
	if r.LastUpdated != nil {
		last = *r.LastUpdated
	}
	var recent []time.Time
	for _, suf := range []string{resultsSuffix, errorsSuffix} {
		// The last line gives the last update; a running job's lines of
		// the last minute give its rate.
		since := time.Time{}
		if r.Running {
			since = s.now().Add(-time.Minute)
		}
		ts := s.tailTimes(name+suf, since)
		recent = append(recent, ts...)
		if n := len(ts); n > 0 && ts[n-1].After(last) {
			last = ts[n-1]
		}
	}
	if !last.IsZero() {
		r.LastUpdated = &last
	}
	if r.Running {
		r.Rate = rateOver(recent, s.now(), time.Minute)
		if left := r.Total - r.Completed - r.Failed; r.Total > 0 && left > 0 && r.Rate > 0 {
			r.ETASeconds = float64(left) / r.Rate
		}
	}
	r.Status = statusOf(r)
	return r
}

func statusOf(r experimentRow) string {
	switch {
	case r.Running:
		return "running"
	case r.Failed > 0:
		return "failed"
	case r.Total > 0 && r.Completed < r.Total:
		return "stopped"
	}
	return "finished"
}

// tailBytes is how much of a journal's end is read for its recent rate.
const tailBytes = 128 << 10

// tailTimes returns, in file order, the timestamps of the complete lines at
// the end of file from the last one back to the first older than since
// (only the last one for a zero since), reading at most tailBytes.
func (s *fsSource) tailTimes(file string, since time.Time) []time.Time {
	f, err := s.root.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	want := int64(tailBytes)
	if since.IsZero() {
		want = 8 << 10 // one line, unless lines are long
	}
	for {
		from := max(0, fi.Size()-want)
		buf := make([]byte, fi.Size()-from)
		n, _ := f.ReadAt(buf, from)
		ts, complete := linesBack(buf[:n], from == 0, since)
		if complete || from == 0 || want >= tailBytes {
			slices.Reverse(ts)
			return ts
		}
		want = tailBytes
	}
}

// linesBack parses timestamps from the last complete line of buf backwards
// until one is older than since. whole says buf starts at a line's start.
// complete is false when it ran out of lines before it was satisfied.
func linesBack(buf []byte, whole bool, since time.Time) (ts []time.Time, complete bool) {
	end := bytes.LastIndexByte(buf, '\n') // a line being written has none yet
	for end > 0 {
		start := bytes.LastIndexByte(buf[:end], '\n') + 1
		if start == 0 && !whole {
			return ts, false // the first line is cut
		}
		if t, ok := lineTime(buf[start:end]); ok {
			ts = append(ts, t)
			if since.IsZero() || t.Before(since) {
				return ts, true
			}
		}
		end = start - 1
	}
	return ts, true
}

// rateOver is records a second over the window before now. When the times
// seen do not reach back to the window's start (the tail read is bounded),
// it divides by the span they cover.
func rateOver(ts []time.Time, now time.Time, window time.Duration) float64 {
	if len(ts) == 0 {
		return 0
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	start := now.Add(-window)
	n := 0
	for _, t := range ts {
		if !t.Before(start) {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	span := window
	if first := ts[len(ts)-n]; n == len(ts) && first.After(start) {
		span = now.Sub(first) // everything we read is recent: rate over what we saw
	}
	if span < time.Second {
		span = time.Second
	}
	return float64(n) / span.Seconds()
}

// lineTime reads the "timestamp" field of a journal line.
func lineTime(line []byte) (time.Time, bool) {
	i := bytes.LastIndex(line, []byte(`"timestamp"`))
	if i < 0 {
		return time.Time{}, false
	}
	rest := line[i+len(`"timestamp"`):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return time.Time{}, false
	}
	rest = rest[q+1:]
	e := bytes.IndexByte(rest, '"')
	if e < 0 {
		return time.Time{}, false
	}
	t := parseTime(string(rest[:e]))
	if t == nil {
		return time.Time{}, false
	}
	return *t, true
}

// parseTime reads the library's timestamps and the Python library's naive
// local ones.
func parseTime(s string) *time.Time {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return &t
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.Local); err == nil {
		return &t
	}
	return nil
}

// readLines calls fn for each complete line of f in [from, to), with its
// offset, reading blocks of buf's size. fn returns false to stop. It returns
// the offset after the last line handed to fn.
func readLines(f io.ReaderAt, from, to int64, buf []byte, fn func(off int64, line []byte) bool) int64 {
	pos, filled := from, 0
	for pos+int64(filled) < to {
		if filled == len(buf) {
			buf = append(buf, make([]byte, len(buf))...) // one line fills it
		}
		want := min(int64(len(buf)-filled), to-pos-int64(filled))
		n, err := f.ReadAt(buf[filled:filled+int(want)], pos+int64(filled))
		filled += n
		start := 0
		for {
			i := bytes.IndexByte(buf[start:filled], '\n')
			if i < 0 {
				break
			}
			if !fn(pos+int64(start), buf[start:start+i]) {
				return pos + int64(start+i+1)
			}
			start += i + 1
		}
		copy(buf, buf[start:filled])
		pos += int64(start)
		filled -= start
		if err != nil || n == 0 {
			break // the file ended (or shrank under us): stop at what was read
		}
	}
	return pos
}
