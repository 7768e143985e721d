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
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// fsSource is the viewSource over a folder of checkpoints. It opens every
// file through an os.Root, so no name, symlink or "..", however it is
// spelled, reaches a file outside the folder; it only ever opens files for
// reading and never takes a checkpoint's lock (a running job must be able
// to open its checkpoint at any moment). Counts, times, rates and failures
// come from the library's read-only Inspect, run history and metrics from
// ReadRuns and ReadMetrics; what the library has no reader for (a page of
// results at a byte offset, progress sampled over a journal) is read here.
//
// A fsSource is safe for concurrent use. Close releases the folder.
type fsSource struct {
	dir  string
	root *os.Root
	now  func() time.Time

	mu    sync.Mutex
	cache map[string]cachedRow
}

func newFSSource(dir string) (*fsSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &fsSource{dir: dir, root: root, now: time.Now, cache: map[string]cachedRow{}}, nil
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
		for _, suf := range []string{metaSuffix, resultsSuffix, errorsSuffix, flowSuffix, pipelineSuffix} {
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

// exists reports whether name is a checkpoint of the folder, none of whose
// files leads out of it.
func (s *fsSource) exists(name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("%w: %v", errNotFound, err)
	}
	for _, suf := range []string{metaSuffix, resultsSuffix, errorsSuffix, flowSuffix, pipelineSuffix} {
		if fi, err := s.root.Stat(name + suf); err == nil && fi.Mode().IsRegular() {
			return s.contained(name)
		}
	}
	return fmt.Errorf("%w: %q", errNotFound, name)
}

func (s *fsSource) Experiments(ctx context.Context) ([]experimentRow, error) {
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	rows := make([]experimentRow, len(names))
	// A few checkpoints at a time: the machine's cores, no more.
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Go(func() {
			for i := range work {
				rows[i] = s.row(names[i])
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
	d := experimentDetail{experimentRow: s.row(name)}
	switch d.Kind {
	case "flow":
		_, d.Steps = s.flowRow(name)
	case "pipeline":
		_, d.Steps = s.pipelineRow(name)
	}
	if d.Kind == "pipeline" {
		d.Progress, d.Sampled = s.stepsProgress(name, d.Steps)
	} else {
		d.Progress, d.Sampled = s.progress(name)
	}
	d.Runs = []runInfo{}
	runs, err := checkpoint.ReadRuns(s.dir, name)
	if err != nil {
		d.Note = joinNote(d.Note, "run history unreadable: "+err.Error())
	}
	for _, r := range slices.Backward(runs) {
		d.Runs = append(d.Runs, runOf(r))
	}
	d.MetricSeries = map[string][]metricPoint{}
	series, err := checkpoint.ReadMetrics(s.dir, name)
	if err != nil {
		d.Note = joinNote(d.Note, "metrics unreadable: "+err.Error())
	}
	for m, pts := range series {
		out := make([]metricPoint, 0, len(pts))
		for _, p := range pts {
			out = append(out, metricPoint{T: p.Time, Step: p.Step, Value: p.Value})
		}
		d.MetricSeries[m] = thinMetric(out)
	}
	return d, nil
}

func runOf(r checkpoint.Run) runInfo {
	ri := runInfo{ID: r.ID, Ended: string(r.Status), Completed: int64(r.Completed), Failed: int64(r.Failed),
		Rate: r.Rate, Params: paramsOf(r.Params), Metrics: r.Metrics}
	ri.Start, ri.End = timeOrNil(r.Start), timeOrNil(r.End)
	return ri
}

// paramsOf shows a run's parameters as columns: an object's fields, or
// the whole value under "params".
func paramsOf(raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) == nil {
		return m
	}
	var v any
	if json.Unmarshal(raw, &v) == nil {
		return map[string]any{"params": v}
	}
	return nil
}

func thinMetric(pts []metricPoint) []metricPoint {
	if len(pts) <= 2*maxPoints {
		return pts
	}
	step := (len(pts) + maxPoints - 1) / maxPoints
	out := make([]metricPoint, 0, maxPoints+1)
	for i := 0; i < len(pts); i += step {
		out = append(out, pts[i])
	}
	return append(out, pts[len(pts)-1])
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// inspect opens the library's read-only View of name, after checking that
// none of its files leads out of the folder (the library follows symlinks).
func (s *fsSource) inspect(name string) (*checkpoint.View, error) {
	if err := s.exists(name); err != nil {
		return nil, err
	}
	if err := s.contained(name); err != nil {
		return nil, err
	}
	v, err := checkpoint.Inspect(s.dir, name)
	if errors.Is(err, checkpoint.ErrNoCheckpoint) {
		return nil, fmt.Errorf("%w: %q", errNotFound, name)
	}
	return v, err
}

// contained refuses a checkpoint one of whose files is a symlink that
// leaves the folder: os.Root resolves every link and refuses an escape.
func (s *fsSource) contained(name string) error {
	for _, suf := range checkpointFiles {
		if _, err := os.Lstat(filepath.Join(s.dir, name+suf)); err != nil {
			continue // absent
		}
		if _, err := s.root.Stat(name + suf); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s%s leads out of the folder", errNotFound, name, suf)
		}
	}
	return nil
}

var checkpointFiles = append([]string{metaSuffix, resultsSuffix, errorsSuffix, ".lock", "_runs.jsonl", "_metrics.jsonl", flowSuffix, pipelineSuffix}, sideSuffixes...)

// A cached row is reused while the checkpoint's files are unchanged, so
// that a page polling every second costs a few stats per idle checkpoint.
type cachedRow struct {
	sig  string
	row  experimentRow
	at   time.Time
	took time.Duration
}

// rowSig is the sizes and times of the files a row is made from.
func (s *fsSource) rowSig(name string) string {
	var b strings.Builder
	for _, suf := range checkpointFiles {
		if fi, err := s.root.Stat(name + suf); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", suf, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// row is one line of the Experiments table, from the library's Inspect and
// run history. Inspect costs about an Open, so a row is remade only when
// its files changed, a running row at most every second (a job killed
// outright changes no file), and a large running checkpoint no more often
// than ten times the time its last Inspect took.
func (s *fsSource) row(name string) experimentRow {
	sig := s.rowSig(name)
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[name]
	s.mu.Unlock()
	if ok {
		age := now.Sub(c.at)
		fresh := c.sig == sig && (!c.row.Running || age < time.Second)
		// A job writing changes the files; one killed outright does not,
		// and must not stay "running" for ten Inspects' time.
		throttled := c.sig != sig && c.row.Running && age < 10*c.took
		// A job killed outright releases its lock at once: the row stops
		// being "running" then, not a second or ten Inspects later.
		released := c.row.Running && !s.lockHeld(name)
		if (fresh || throttled) && !released {
			return c.row
		}
	}
	start := time.Now()
	r := s.makeRow(name)
	s.mu.Lock()
	s.cache[name] = cachedRow{sig: sig, row: r, at: now, took: time.Since(start)}
	s.mu.Unlock()
	return r
}

// lockHeld reports whether a process holds name's lock now, from the
// kernel's list of locks (see heldLocks): the lock is never probed.
func (s *fsSource) lockHeld(name string) bool {
	fi, err := s.root.Stat(name + ".lock")
	return err == nil && heldLocks().held(fi)
}

func (s *fsSource) makeRow(name string) experimentRow {
	if err := s.contained(name); err != nil {
		return experimentRow{Name: name, Kind: "checkpoint", Status: "unreadable", Note: err.Error()}
	}
	switch s.kindOf(name) {
	case "flow":
		r, _ := s.flowRow(name)
		return r
	case "pipeline":
		r, _ := s.pipelineRow(name)
		return r
	}
	if s.large(name) {
		r := s.quickRow(name)
		s.addRuns(&r)
		return r
	}
	r := experimentRow{Name: name, Kind: "checkpoint"}
	v, err := s.inspect(name)
	if err != nil {
		r.Status, r.Note = "unreadable", err.Error()
		return r
	}
	in := v.Info()
	v.Close()
	r.Running = in.Running
	r.Completed, r.Failed, r.Total = int64(in.Completed), int64(in.Failed), int64(in.Total)
	r.SizeBytes = in.Size
	for _, f := range in.SideFiles {
		r.SideFiles = append(r.SideFiles, filepath.Base(f))
	}
	r.StartedAt, r.LastUpdated = timeOrNil(in.StartedAt), timeOrNil(in.LastUpdated)
	if r.Running {
		r.Rate = in.Rate
		if left := r.Total - r.Completed - r.Failed; r.Total > 0 && left > 0 && r.Rate > 0 {
			r.ETASeconds = float64(left) / r.Rate
		}
	}
	s.addRuns(&r)
	return r
}

// addRuns adds the latest run's parameters, the latest metrics and a
// crashed status from the run history.
func (s *fsSource) addRuns(r *experimentRow) {
	name := r.Name
	crashed := false
	if runs, err := checkpoint.ReadRuns(s.dir, name); err != nil {
		r.Note = joinNote(r.Note, "run history unreadable: "+err.Error())
	} else if n := len(runs); n > 0 {
		last := runs[n-1]
		r.Params = paramsOf(last.Params)
		crashed = last.Status == checkpoint.RunCrashed && !r.Running
		// The latest value of each metric, from the newest run that
		// logged it.
		for _, run := range runs {
			for k, v := range run.Metrics {
				if r.Metrics == nil {
					r.Metrics = map[string]float64{}
				}
				r.Metrics[k] = v
			}
		}
	}
	r.Status = statusOf(*r, crashed)
}

func statusOf(r experimentRow, crashed bool) string {
	switch {
	case r.Running:
		return "running"
	case crashed:
		return "crashed"
	case r.Failed > 0:
		return "failed"
	case r.Total > 0 && r.Completed < r.Total:
		return "stopped"
	case r.Completed == 0 && r.Total == 0:
		return "empty" // opened, nothing saved yet
	}
	return "finished"
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
