package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// A Pipeline is several steps run over the same items (enrich, preprocess,
// generate...), each step a Runner with its own files, under one lock. A step
// may take a previous step's results as its input, from this run or an
// earlier one.
//
// The files of step STEP of pipeline NAME are NAME.STEP_results.jsonl,
// NAME.STEP_errors.jsonl and so on, beside NAME.lock and NAME_pipeline.json,
// which keeps the order of the steps across runs.
//
// A Pipeline is made by OpenPipeline and is safe for concurrent use. It holds
// its lock until Close, which also closes its steps' runners.
type Pipeline[K comparable] struct {
	name string
	dir  string
	opts []Option // for every step's Open
	log  *slog.Logger
	lock *os.File
	temp string // WithDisabled's folder

	mu     sync.Mutex
	closed bool
	run    *runLog                // this run in NAME_runs.jsonl (runs_flow.go)
	steps  []string               // in the order first opened, over all runs
	open   map[string]pipelineRun // steps opened in this run
}

// pipelineRun is what a Pipeline needs of a step's Runner, whatever its T.
type pipelineRun interface {
	Close() error
	stepSummary() StepSummary
	runnerClosed() bool
}

// A StepSummary is how far one step of a pipeline has come.
type StepSummary struct {
	Step      string
	Completed int // keys whose latest outcome is a result
	Failed    int // keys whose latest outcome is an error
	// InFlight counts the items that were in flight when the last run died:
	// found by this run's Open of the step or, for a step not opened in this
	// run, read from its in-flight file.
	InFlight int
	Total    int // items in the step's latest loop (as Progress)
}

// pipelineFile is NAME_pipeline.json.
type pipelineFile struct {
	Steps []string `json:"steps"`
}

// OpenPipeline opens the pipeline called name, creating it if needed. The
// options are those of Open and apply to every step; WithFresh (with
// WithBackup, a backup) starts the whole pipeline from zero, and WithDisabled
// runs it in a temporary folder that Close removes. It fails with an error
// wrapping ErrLocked if another process or Pipeline holds it.
func OpenPipeline[K comparable](name string, opts ...Option) (*Pipeline[K], error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	temp, err := o.useTempDir()
	if err != nil {
		return nil, err
	}
	p := &Pipeline[K]{name: name, dir: o.dir, log: o.logger, temp: temp, open: make(map[string]pipelineRun)}
	fail := func(err error) (*Pipeline[K], error) {
		if p.lock != nil {
			p.lock.Close()
		}
		if temp != "" {
			os.RemoveAll(temp)
		}
		return nil, err
	}
	if err := makeDir(p.dir); err != nil {
		return fail(fmt.Errorf("checkpoint: %w", err))
	}
	if p.lock, err = lockFile(filepath.Join(p.dir, name+".lock")); err != nil {
		if errors.Is(err, ErrLocked) {
			return fail(fmt.Errorf("checkpoint: open pipeline %q in %s: %w", name, p.dir, ErrLocked))
		}
		return fail(fmt.Errorf("checkpoint: %w", err))
	}
	removeTemps(p.stepsPath(), p.log)
	if p.steps, err = readPipelineFile(p.stepsPath()); err != nil {
		return fail(err)
	}
	if o.fresh {
		files := p.allFiles()
		if o.ext.backup {
			bak, err := backupFiles(p.dir, name, files)
			if err != nil {
				return fail(err)
			}
			if bak != "" {
				p.log.Info("checkpoint: moved the pipeline's files to a backup", "pipeline", name, "backup", bak)
			}
		} else if err := removeFiles(files); err != nil {
			return fail(err)
		}
		p.steps = nil
	}
	if p.run, err = startPipelineRun(&o, p.dir, name); err != nil {
		return fail(err)
	}
	// Every step: the user's options, then those the pipeline decides.
	p.opts = append(slices.Clone(opts), func(o *options) {
		o.dir = p.dir
		o.fresh = false
		o.ext.disabled = false
		o.ext.heldLock = true
	})
	return p, nil
}

func (p *Pipeline[K]) stepsPath() string { return filepath.Join(p.dir, p.name+"_pipeline.json") }

func (p *Pipeline[K]) stepName(step string) string { return p.name + "." + step }

// allFiles are the files of every known step and the steps file.
func (p *Pipeline[K]) allFiles() []string {
	var files []string
	for _, s := range p.steps {
		files = append(files, runnerFiles(p.dir, p.stepName(s))...)
	}
	return append(files, p.stepsPath())
}

// runnerFiles are the data files of the checkpoint name (not its lock).
func runnerFiles(dir, name string) []string {
	var out []string
	for _, suffix := range []string{
		"_results.jsonl", "_errors.jsonl", "_meta.json", "_crashes.json", "_inflight",
		"_results.jsonl.torn", "_errors.jsonl.torn", "_results.jsonl.corrupt", "_errors.jsonl.corrupt",
	} {
		out = append(out, filepath.Join(dir, name+suffix))
	}
	return out
}

func removeFiles(paths []string) error {
	for _, f := range paths {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

// pipelineFiles are the files of the pipeline called name in dir, if there
// is one: its steps file, and each step's data files, run history and
// metrics, for Reset.
func pipelineFiles(dir, name string) ([]string, error) {
	path := filepath.Join(dir, name+"_pipeline.json")
	steps, err := readPipelineFile(path)
	if err != nil || steps == nil {
		return nil, err
	}
	files := []string{path}
	for _, s := range steps {
		if checkStep(s) != nil {
			continue // not a name this library wrote: not a path to touch
		}
		step := name + "." + s
		files = append(files, runnerFiles(dir, step)...)
		files = append(files, runsPath(dir, step), metricsPath(dir, step))
	}
	return files, nil
}

// pipelinesOf returns the names of the pipelines that may hold the
// checkpoint called name as a step: each name before a dot of name ("a" and
// "a.b" for "a.b.c") whose lock file exists. A step takes no lock of its
// own (one lock per pipeline), so a change of the step alone (Retry,
// Forget, Compact, Reset) must also take those locks. That is a superset on
// purpose: whether a step is listed in the pipeline's file is decided by
// the pipeline after it opens the step, too late to rely on, and a lock
// file is there from OpenPipeline on.
func pipelinesOf(dir, name string) []string {
	var pipes []string
	for i, c := range name {
		if c == '.' && i > 0 {
			if _, err := os.Stat(lockPath(dir, name[:i])); err == nil {
				pipes = append(pipes, name[:i])
			}
		}
	}
	return pipes
}

func lockPath(dir, name string) string { return filepath.Join(dir, name+".lock") }

// stepRunning reports whether the checkpoint called name is a step of a
// pipeline that is running now: one listed in a pipeline's file, whose lock
// a process holds.
func stepRunning(dir, name string) (bool, error) {
	for _, pipe := range pipelinesOf(dir, name) {
		steps, err := readPipelineFile(filepath.Join(dir, pipe+"_pipeline.json"))
		if err != nil || !slices.Contains(steps, name[len(pipe)+1:]) {
			continue
		}
		if held, err := lockHeld(lockPath(dir, pipe)); held || err != nil {
			return held, err
		}
	}
	return false, nil
}

func readPipelineFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var f pipelineFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	return f.Steps, nil
}

// PipelineStep opens the step called step of p and returns its Runner,
// which works as any Runner (Iterate, Process, AllResults...) except that it
// takes no lock of its own: p holds it. p's Close closes it, if the caller
// has not. A step is opened at most once per run; opening it again while it
// is open is an error.
//
// It is a function, not a method, because a step's item type T is its own.
func PipelineStep[K comparable, T any](p *Pipeline[K], step string) (*Runner[K, T], error) {
	if err := checkStep(step); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if s, ok := p.open[step]; ok && !s.runnerClosed() {
		return nil, fmt.Errorf("checkpoint: step %q of pipeline %q is already open", step, p.name)
	}
	r, err := Open[K, T](p.stepName(step), p.opts...)
	if err != nil {
		return nil, err
	}
	if err := p.run.addJournals(r.run); err != nil { // the step's items count for the pipeline's run
		r.Close()
		return nil, err
	}
	if !slices.Contains(p.steps, step) {
		steps := append(slices.Clone(p.steps), step)
		if err := p.writeSteps(steps); err != nil {
			r.Close()
			return nil, err
		}
		p.steps = steps
	}
	p.open[step] = r
	return r, nil
}

func checkStep(step string) error {
	if err := checkName(step); err != nil {
		return fmt.Errorf("checkpoint: step: %w", err)
	}
	return nil
}

func (p *Pipeline[K]) writeSteps(steps []string) error {
	b, err := json.MarshalIndent(pipelineFile{Steps: steps}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p.stepsPath(), append(b, '\n'), os.Rename); err != nil {
		return fmt.Errorf("checkpoint: write steps: %w", err)
	}
	return nil
}

// Steps returns the pipeline's steps in the order they were first opened,
// over all runs.
func (p *Pipeline[K]) Steps() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.steps)
}

// ReadPipelineSteps returns the steps of the pipeline called name in dir,
// in the order they were first opened, without taking its lock: it is for
// tools that look at a pipeline while it may be running. Each step is a
// checkpoint called name.step, which Inspect reads. The error wraps
// fs.ErrNotExist if there is no such pipeline.
func ReadPipelineSteps(dir, name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	steps, err := readPipelineFile(filepath.Join(dir, name+"_pipeline.json"))
	if err != nil {
		return nil, err
	}
	if steps == nil {
		return nil, fmt.Errorf("checkpoint: no pipeline %q in %s: %w", name, dir, fs.ErrNotExist)
	}
	return steps, nil
}

// Summary returns how far each step has come, in the order of Steps. A step
// opened in this run is summed up from its Runner; another one is counted
// from its files, which reads them as Open does.
func (p *Pipeline[K]) Summary() ([]StepSummary, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	out := make([]StepSummary, 0, len(p.steps))
	for _, step := range p.steps {
		if r, ok := p.open[step]; ok && !r.runnerClosed() {
			s := r.stepSummary()
			s.Step = step
			out = append(out, s)
			continue
		}
		s, err := p.summaryFromFiles(step)
		if err != nil {
			return out, err
		}
		s.Step = step
		out = append(out, s)
	}
	return out, nil
}

func (r *Runner[K, T]) stepSummary() StepSummary {
	m := r.Meta()
	return StepSummary{Completed: m.CompletedItems, Failed: m.FailedItems, InFlight: len(r.Crashed()), Total: m.TotalItems}
}

// summaryFromFiles counts a step not opened in this run from its journals:
// its meta file may be a second behind them, or much more after a crash. It
// leaves the in-flight file for the step's own Open to judge, and counts
// the keys marked there.
func (p *Pipeline[K]) summaryFromFiles(step string) (StepSummary, error) {
	var s StepSummary
	r, err := Open[K, json.RawMessage](p.stepName(step), append(slices.Clone(p.opts), func(o *options) {
		o.ext.peek = true
		o.logger = slog.New(slog.DiscardHandler) // the step's own Open logs what it finds
	})...)
	if err != nil {
		return s, err
	}
	m := r.Meta()
	if err := r.Close(); err != nil {
		return s, err
	}
	s.Completed, s.Failed, s.Total = m.CompletedItems, m.FailedItems, m.TotalItems
	st, err := ReadInFlight(p.dir, p.stepName(step))
	if err != nil {
		return s, err
	}
	s.InFlight = len(st.InFlight)
	return s, nil
}

// ResetStep moves the files of step into a new backup folder
// <dir>/<name>.<step>.bak-<time>/, so that its next run starts from zero. The
// step must not be open in this run. It returns the backup folder ("" if the
// step had no files).
func (p *Pipeline[K]) ResetStep(step string) (string, error) {
	if err := checkStep(step); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkResettable(step); err != nil {
		return "", err
	}
	return backupFiles(p.dir, p.stepName(step), runnerFiles(p.dir, p.stepName(step)))
}

// Reset moves the files of every step, and the order of the steps, into a
// new backup folder <dir>/<name>.bak-<time>/. No step may be open in this
// run. It returns the backup folder ("" if there were no files).
//
// The pipeline's run history (NAME_runs.jsonl, NAME_metrics.jsonl) stays,
// as it does through Clear and WithFresh: this run is still recorded there.
// `checkpoint reset NAME`, run when no job holds the lock, moves it too.
func (p *Pipeline[K]) Reset() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, step := range p.steps {
		if err := p.checkResettable(step); err != nil {
			return "", err
		}
	}
	bak, err := backupFiles(p.dir, p.name, p.allFiles())
	if err == nil {
		p.steps = nil
	}
	return bak, err
}

func (p *Pipeline[K]) checkResettable(step string) error {
	if p.closed {
		return ErrClosed
	}
	if r, ok := p.open[step]; ok && !r.runnerClosed() {
		return fmt.Errorf("checkpoint: reset step %q of pipeline %q: it is open; close it first", step, p.name)
	}
	return nil
}

// Close closes the steps' runners that are still open and releases the
// pipeline's lock. A second Close returns ErrClosed.
func (p *Pipeline[K]) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.closed = true
	var err error
	for _, step := range p.steps {
		if r, ok := p.open[step]; ok {
			if cerr := r.Close(); cerr != nil && !errors.Is(cerr, ErrClosed) {
				err = errors.Join(err, fmt.Errorf("step %s: %w", step, cerr))
			}
		}
	}
	err = errors.Join(err, p.run.finish(), p.lock.Close())
	if p.temp != "" {
		err = errors.Join(err, os.RemoveAll(p.temp))
	}
	return err
}
