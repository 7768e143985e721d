package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Run history. Every Open starts a run, recorded in NAME_runs.jsonl beside
// the journals: one "start" line when it opens and one "end" line when it
// closes. A run whose process died has no end line; the next Open finds it,
// works out from the journals how far it got, and appends its end as
// crashed. The file is append-only and only ever grows by whole lines, and
// the Python library ignores it: the meta file keeps exactly its seven
// fields.
//
// The history outlives the data, on purpose: Clear and WithFresh empty the
// journals but keep NAME_runs.jsonl and NAME_metrics.jsonl, because a
// fresh run is still one of the job's runs (its counts start from zero).
// Only `checkpoint reset` moves them, into its backup with the rest.

// RunStatus is how a run ended, or that it has not.
type RunStatus string

const (
	// RunRunning is a run without an end whose process is still alive (or
	// runs on another host, where that cannot be told).
	RunRunning RunStatus = "running"
	// RunFinished is a run that ended with Close.
	RunFinished RunStatus = "finished"
	// RunCrashed is a run whose process died before Close.
	RunCrashed RunStatus = "crashed"
)

// A Run is one Open-to-Close of a checkpoint, as ReadRuns reports it.
type Run struct {
	ID        string    `json:"id"` // sorts in the order the runs started
	Start     time.Time `json:"start"`
	End       time.Time `json:"end,omitzero"` // zero while running
	Status    RunStatus `json:"status"`
	Completed int       `json:"completed"` // results saved during the run
	Failed    int       `json:"failed"`    // errors saved during the run
	Rate      float64   `json:"rate"`      // results saved per second of the run
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	GoVersion string    `json:"go_version"`
	// Params is the JSON given to WithParams; nil without it.
	Params json.RawMessage `json:"params,omitempty"`
	// Metrics holds the latest value of each metric logged during the run.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// WithParams records what the run is configured with (a model, a prompt,
// a temperature...) in the run history, where ReadRuns and Compare show it.
// params must marshal to JSON; a map or a struct is usual. Open fails if it
// does not.
func WithParams(params any) Option {
	return func(o *options) { o.params = params }
}

// runJournal is a file whose records count for a run. For a journal, its
// lines: results count as completed, errors as failed, and Offset is its
// size when the run started, where the run's own lines begin. For a flow's
// file (roleSteps), its steps: those that finished during the run count as
// completed or failed by their latest outcome.
type runJournal struct {
	Role   string `json:"role"` // roleCompleted, roleFailed or roleSteps
	File   string `json:"file"` // base name, in the run's folder
	Offset int64  `json:"offset"`
}

const (
	roleCompleted = "completed"
	roleFailed    = "failed"
	roleSteps     = "steps"
)

// runLine is one line of NAME_runs.jsonl: a start, an end, or between
// them, journals that joined the run (a pipeline's steps, as they open).
type runLine struct {
	Event string    `json:"event"` // "start", "journals" or "end"
	Run   string    `json:"run"`
	Time  time.Time `json:"time"`

	// start
	Host      string          `json:"host,omitempty"`
	PID       int             `json:"pid,omitempty"`
	GoVersion string          `json:"go,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Journals  []runJournal    `json:"journals,omitempty"` // also of "journals"

	// end
	Status    RunStatus `json:"status,omitempty"`
	Completed *int      `json:"completed,omitempty"`
	Failed    *int      `json:"failed,omitempty"`
	Rate      *float64  `json:"rate,omitempty"`
}

// runLog is the record of the current run. Runners, flows and pipelines
// each start one at Open (startRun) and end it at Close (finish). Its
// methods are safe for concurrent use; a nil *runLog does nothing.
type runLog struct {
	dir, name string
	id        string
	start     time.Time
	log       *slog.Logger

	mu       sync.Mutex // guards what follows: LogMetrics writes under it
	journals []runJournal
	metrics  *os.File // opened at the first LogMetrics
	done     bool
	bufs     sync.Pool // *[]byte, for building metrics lines
}

func runsPath(dir, name string) string    { return filepath.Join(dir, name+"_runs.jsonl") }
func metricsPath(dir, name string) string { return filepath.Join(dir, name+"_metrics.jsonl") }

// startRun records the start of a run of the checkpoint name in dir, after
// recording as crashed a previous run that has no end. journals lists the
// files whose new lines count as the run's completed and failed items, with
// their sizes now. params is JSON or nil. The caller holds the checkpoint's
// lock, so no other run of it is under way.
func startRun(dir, name string, params json.RawMessage, journals []runJournal, log *slog.Logger) (*runLog, error) {
	path := runsPath(dir, name)
	lines, err := readRunLines(path)
	if err != nil {
		return nil, err
	}
	if last := unfinishedRun(lines); last != nil {
		end := crashedEnd(dir, last)
		if err := appendRunLine(path, end); err != nil {
			return nil, fmt.Errorf("checkpoint: record the crashed run %s: %w", last.Run, err)
		}
		log.Warn("checkpoint: the previous run did not close: recorded as crashed",
			"name", name, "run", last.Run, "completed", *end.Completed, "failed", *end.Failed)
	}
	host, _ := os.Hostname()
	start := time.Now().Truncate(time.Microsecond)
	rl := &runLog{dir: dir, name: name, id: newRunID(start), start: start, journals: journals, log: log}
	err = appendRunLine(path, runLine{
		Event: "start", Run: rl.id, Time: start,
		Host: host, PID: os.Getpid(), GoVersion: runtime.Version(),
		Params: params, Journals: journals,
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: record the run: %w", err)
	}
	return rl, nil
}

// startRun is the runner's hook in Open: it starts the run with the
// journals as loaded. An Open that only peeks (a pipeline's Summary of a
// step not opened in this run) is no run.
func (r *Runner[K, T]) startRun(o *options) error {
	if o.ext.peek {
		return nil
	}
	var params json.RawMessage
	if o.params != nil {
		b, err := json.Marshal(o.params)
		if err != nil {
			return fmt.Errorf("checkpoint: params are not JSON: %w", err)
		}
		params = b
	}
	rl, err := startRun(r.dir, r.name, params, []runJournal{
		{Role: roleCompleted, File: filepath.Base(r.results.path), Offset: r.results.size},
		{Role: roleFailed, File: filepath.Base(r.errors.path), Offset: r.errors.size},
	}, r.log)
	r.run = rl
	return err
}

// newRunID makes an id that sorts by start time: the UTC time to the
// microsecond, then random digits in case two runs start in the same one.
func newRunID(t time.Time) string {
	return fmt.Sprintf("%s-%04x", t.UTC().Format("20060102T150405.000000Z"), rand.Uint32()&0xffff)
}

// addJournals adds the journals of step, a run of a pipeline's step that
// has just started, to those of rl, the pipeline's run, so that the items
// the step saves count for the pipeline's run too. They are recorded in
// the runs file at once, so that a crashed run's counts include them. A
// journal already in the run keeps its first offset (a step closed and
// opened again in one run).
func (rl *runLog) addJournals(step *runLog) error {
	if rl == nil || step == nil {
		return nil
	}
	step.mu.Lock()
	js := slices.Clone(step.journals)
	step.mu.Unlock()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.done {
		return ErrClosed
	}
	js = slices.DeleteFunc(js, func(j runJournal) bool {
		return slices.ContainsFunc(rl.journals, func(k runJournal) bool { return k.File == j.File })
	})
	if len(js) == 0 {
		return nil
	}
	err := appendRunLine(runsPath(rl.dir, rl.name), runLine{
		Event: "journals", Run: rl.id, Time: time.Now().Truncate(time.Microsecond), Journals: js,
	})
	if err != nil {
		return fmt.Errorf("checkpoint: record the run's journals: %w", err)
	}
	rl.journals = append(rl.journals, js...)
	return nil
}

// finish records the end of the run as finished, with the lines its
// journals gained, and closes the metrics file. Later calls do nothing.
func (rl *runLog) finish() error {
	if rl == nil {
		return nil
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.done {
		return nil
	}
	rl.done = true
	var err error
	if rl.metrics != nil {
		err = rl.metrics.Close()
		rl.metrics = nil
	}
	c := countRun(rl.dir, rl.start, rl.journals)
	end := time.Now().Truncate(time.Microsecond)
	rate := ratePerSecond(c.completed, end.Sub(rl.start))
	err = errors.Join(err, appendRunLine(runsPath(rl.dir, rl.name), runLine{
		Event: "end", Run: rl.id, Time: end, Status: RunFinished,
		Completed: &c.completed, Failed: &c.failed, Rate: &rate,
	}))
	if err != nil {
		return fmt.Errorf("checkpoint: record the end of the run: %w", err)
	}
	return nil
}

func ratePerSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// crashedEnd is the end line of a run that never closed: its counts and its
// end come from the lines it left in the journals.
func crashedEnd(dir string, start *runLine) runLine {
	c := countRun(dir, start.Time, start.Journals)
	end := c.last
	if end.Before(start.Time) {
		end = start.Time // it saved nothing
	}
	rate := ratePerSecond(c.completed, end.Sub(start.Time))
	return runLine{
		Event: "end", Run: start.Run, Time: end, Status: RunCrashed,
		Completed: &c.completed, Failed: &c.failed, Rate: &rate,
	}
}

// runCounts is what a run left in its journals.
type runCounts struct {
	completed, failed int
	last              time.Time // the timestamp of its latest line
}

// countRun counts the lines that the run started at since wrote to
// journals. A journal's lines from its offset at the start are the run's:
// nothing else writes while the run holds the lock. If the journal no
// longer fits that offset (Clear emptied it during the run, or it was
// rewritten since), the lines stamped at or after since are counted
// instead.
func countRun(dir string, since time.Time, journals []runJournal) runCounts {
	var c runCounts
	for _, j := range journals {
		var n int
		var last time.Time
		switch j.Role {
		case roleCompleted:
			n, last = countJournalSince(filepath.Join(dir, j.File), j.Offset, since)
			c.completed += n
		case roleFailed:
			n, last = countJournalSince(filepath.Join(dir, j.File), j.Offset, since)
			c.failed += n
		case roleSteps:
			var done, failed int
			done, failed, last = countStepsSince(filepath.Join(dir, j.File), since)
			c.completed += done
			c.failed += failed
		}
		if last.After(c.last) {
			c.last = last
		}
	}
	return c
}

// countStepsSince counts the steps of the flow file at path that finished
// at or after since, by their latest outcome, and returns the latest time
// one finished. A missing or unreadable file has none.
func countStepsSince(path string, since time.Time) (done, failed int, last time.Time) {
	f, err := readFlowFile(path)
	if err != nil || f == nil {
		return 0, 0, time.Time{}
	}
	for _, s := range f.Steps {
		if s.Finished.IsZero() || s.Finished.Before(since) {
			continue
		}
		switch s.Status {
		case StepDone:
			done++
		case StepFailed:
			failed++
		default:
			continue
		}
		if s.Finished.After(last) {
			last = s.Finished
		}
	}
	return done, failed, last
}

// countJournalSince returns the number of complete lines the journal at
// path holds from offset on, and the timestamp of the last one. A missing
// file holds none. If offset is not the start of a line stamped at or after
// since, it scans the whole file and counts the lines stamped at or after
// since.
func countJournalSince(path string, offset int64, since time.Time) (n int, last time.Time) {
	f, err := os.Open(path)
	if err != nil {
		return 0, time.Time{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, time.Time{}
	}
	size := fi.Size()
	var sc lineScanner
	if offsetFits(f, offset, size, since) {
		sc.scan(f, offset, size, func(_ int64, _ int, line []byte) error {
			n++
			if t, ok := lineTime(line); ok {
				last = t // lines are stamped in order: the last is the latest
			}
			return nil
		})
		return n, last
	}
	sc.scan(f, 0, size, func(_ int64, _ int, line []byte) error {
		if t, ok := lineTime(line); ok && !t.Before(since) {
			n++
			if t.After(last) {
				last = t
			}
		}
		return nil
	})
	return n, last
}

// offsetFits reports whether offset is where the run's lines begin: the end
// of the file, or the start of a line stamped at or after since.
func offsetFits(f *os.File, offset, size int64, since time.Time) bool {
	if offset > size || offset < 0 {
		return false
	}
	if offset > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], offset-1); err != nil || b[0] != '\n' {
			return false
		}
	}
	if offset == size {
		return true
	}
	j := journal{path: f.Name(), f: f}
	line, err := j.readLine(offset)
	if err != nil {
		return false
	}
	t, ok := lineTime(line)
	return ok && !t.Before(since)
}

// lineTime is the timestamp of a journal line.
func lineTime(line []byte) (time.Time, bool) {
	rec, ok := parseRecord(bytes.TrimSuffix(line, []byte{'\r'}))
	if !ok {
		return time.Time{}, false
	}
	return parseTimestamp(rec.ts)
}

// appendRunLine appends one line to the runs file and syncs it. If a crash
// left the file's last line without its newline, the new line starts on a
// line of its own rather than being glued to it.
func appendRunLine(path string, l runLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return appendLine(path, append(b, '\n'))
}

// appendLine appends line, which ends in a newline, to the file at path in
// one write and syncs it, after a newline if the file does not end in one.
func appendLine(path string, line []byte) error {
	f, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err == nil {
		torn, err := endsTorn(f)
		f.Close()
		if err != nil {
			return err
		}
		if torn {
			line = append([]byte{'\n'}, line...)
		}
	}
	return appendSync(path, line) // store_jsonl.go
}

// endsTorn reports whether f is not empty and does not end in a newline.
func endsTorn(f *os.File) (bool, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], fi.Size()-1); err != nil {
		return false, err
	}
	return b[0] != '\n', nil
}

// readRunLines reads the runs file; a missing file holds no runs. Lines
// that do not parse (a line torn by a crash) are skipped.
func readRunLines(path string) ([]runLine, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var lines []runLine
	for line := range bytes.Lines(b) {
		var l runLine
		if json.Unmarshal(line, &l) == nil && l.Run != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// unfinishedRun returns the start line of the last run if it has no end,
// with the journals that joined the run later added to its own. Each Open
// ends the previous run before starting its own, so only the last run can
// lack one.
func unfinishedRun(lines []runLine) *runLine {
	var joined []runLine
	for i := len(lines) - 1; i >= 0; i-- {
		switch l := lines[i]; l.Event {
		case "end":
			return nil
		case "journals":
			joined = append(joined, l)
		case "start":
			l.Journals = slices.Clone(l.Journals)
			for _, j := range slices.Backward(joined) {
				if j.Run == l.Run {
					l.Journals = append(l.Journals, j.Journals...)
				}
			}
			return &l
		}
	}
	return nil
}

// ReadRuns returns the run history of the checkpoint name in dir, oldest
// first, with each run's final metrics. Runs before a Clear or WithFresh
// are included: those keep the history. It takes no lock and is safe while
// a run is under way: a run that has not ended shows as RunRunning while
// its process lives, and as RunCrashed (with the counts derived from the
// journals, as the next Open will record them) once it has died. A
// checkpoint without history has no runs and no error.
func ReadRuns(dir, name string) ([]Run, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	lines, err := readRunLines(runsPath(dir, name))
	if err != nil {
		return nil, err
	}
	var runs []Run
	byID := make(map[string]int)
	for _, l := range lines {
		switch l.Event {
		case "start":
			byID[l.Run] = len(runs)
			runs = append(runs, Run{
				ID: l.Run, Start: l.Time, Status: RunRunning,
				Host: l.Host, PID: l.PID, GoVersion: l.GoVersion, Params: l.Params,
			})
		case "end":
			i, ok := byID[l.Run]
			if !ok {
				continue
			}
			run := &runs[i]
			run.End, run.Status = l.Time, l.Status
			run.Completed, run.Failed, run.Rate = deref(l.Completed), deref(l.Failed), deref(l.Rate)
		}
	}
	if last := unfinishedRun(lines); last != nil {
		run := &runs[byID[last.Run]]
		c := countRun(dir, last.Time, last.Journals)
		run.Completed, run.Failed = c.completed, c.failed
		if !processAlive(last.Host, last.PID) {
			end := crashedEnd(dir, last)
			run.Status, run.End, run.Rate = RunCrashed, end.Time, deref(end.Rate)
		} else if c.last.After(run.Start) {
			run.Rate = ratePerSecond(c.completed, c.last.Sub(run.Start))
		}
	}
	if len(runs) == 0 {
		return nil, nil
	}
	series, err := ReadMetrics(dir, name)
	if err != nil {
		return runs, err
	}
	for metric, points := range series {
		for _, p := range points {
			i, ok := byID[p.Run]
			if !ok {
				continue
			}
			if runs[i].Metrics == nil {
				runs[i].Metrics = make(map[string]float64)
			}
			runs[i].Metrics[metric] = p.Value // points are in file order: the latest wins
		}
	}
	return runs, nil
}

func deref[V any](p *V) V {
	var v V
	if p != nil {
		v = *p
	}
	return v
}

// processAlive reports whether the process that started a run may still be
// running: on this host, whether a process with its id exists; on another
// host, it cannot be told, so yes.
func processAlive(host string, pid int) bool {
	if h, _ := os.Hostname(); h != host {
		return true
	}
	if pid == os.Getpid() {
		return true
	}
	return pidAlive(pid)
}

// latestRun returns the most recent run of a checkpoint, or nil.
func latestRun(dir, name string) (*Run, error) {
	runs, err := ReadRuns(dir, name)
	if len(runs) == 0 {
		return nil, err
	}
	return &runs[len(runs)-1], err
}
