package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrStepsChanged is returned (wrapped, with both lists) by Flow.Run when the
// flow was saved with other steps than it has now, and the change is not
// steps appended at the end. Run with Restart to start over with the new
// steps.
var ErrStepsChanged = errors.New("the flow's steps changed since it was saved")

// A Flow runs steps in order over a state of type S, saving the state after
// every step that succeeds. When a step fails, panics, or its process is
// killed, the next Run starts again at that step, from exactly the state it
// started from the first time.
//
// The state goes to each step freshly decoded from its saved JSON, so a step
// sees the same thing on a first run and on a resumed one, and a step that
// fails halfway through changing it leaves nothing behind. S must therefore
// survive a JSON round trip; NewFlow checks its type. Keep the state small
// (it is rewritten after every step, with the state each step started from)
// and put large data in Snapshots.
//
// The flow's files sit beside the checkpoints in the folder of WithDir:
// <name>_flow.json (the state and each step's history, plain JSON),
// <name>_flow.running (the step under way) and <name>_snapshots/ (Snapshots).
// The Python library ignores them.
//
// A Flow is made by NewFlow and holds its name exclusively, across processes,
// until Close: a Flow and a Runner of one name exclude each other. Its
// methods are safe for concurrent use; one Run at a time.
type Flow[S any] struct {
	name   string
	dir    string
	path   string
	log    *slog.Logger
	rename func(oldpath, newpath string) error
	lock   *os.File
	marker *os.File
	snaps  *Snapshots

	mu      sync.Mutex
	steps   []flowStep[S]
	stepErr error        // a bad Step call, returned by Run
	file    *flowFile    // as last read or written; nil before the first write
	live    []stepRecord // during Run: the records, with the running step
	running bool
	closed  bool
	run     *runLog // this run in NAME_runs.jsonl (runs_flow.go)
}

type flowStep[S any] struct {
	name string
	fn   func(context.Context, *S) error
}

// StepError is the error Run returns when a step returns an error or panics.
// Err is the step's error, or for a panic an error holding the panic value
// and the stack.
type StepError struct {
	Flow string
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("checkpoint: flow %q: step %q failed: %v", e.Flow, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// A RunOption changes where Flow.Run starts.
type RunOption func(*runOptions)

type runOptions struct {
	from    string
	restart bool
}

// FromStep makes Run start at the named step even if nothing broke, from the
// state saved before that step on its latest run. The steps after it run
// again too.
func FromStep(name string) RunOption {
	return func(o *runOptions) { o.from = name }
}

// Restart makes Run start at the first step from the state given to Run,
// forgetting the saved state and history (snapshots are kept).
func Restart() RunOption {
	return func(o *runOptions) { o.restart = true }
}

// NewFlow opens the flow called name, creating it if needed, and loads the
// state and history earlier runs saved. It takes the same Options as Open:
// WithDir, WithLogger and WithFresh (which deletes the saved state, not the
// snapshots) apply; the options of journals do not. It fails with an error
// wrapping ErrLocked if a Flow or Runner of that name is open, in this
// process or another, and if S cannot round-trip through JSON.
func NewFlow[S any](name string, opts ...Option) (*Flow[S], error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkStateType(reflect.TypeFor[S]()); err != nil {
		return nil, fmt.Errorf("checkpoint: state type %v cannot be used: %w", reflect.TypeFor[S](), err)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.rename == nil {
		o.rename = os.Rename
	}
	if err := makeDir(o.dir); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	f := &Flow[S]{name: name, dir: o.dir, path: flowPath(o.dir, name), log: o.logger, rename: o.rename}
	var err error
	f.lock, err = lockFile(filepath.Join(o.dir, name+".lock"))
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("checkpoint: flow %q in %s: %w", name, o.dir, ErrLocked)
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := f.load(o.fresh); err != nil {
		f.closeFiles()
		return nil, err
	}
	if f.run, err = startFlowRun(&o, o.dir, name); err != nil {
		f.closeFiles()
		return nil, err
	}
	return f, nil
}

func (f *Flow[S]) load(fresh bool) error {
	removeTemps(f.path, f.log) // left by a run killed while saving
	mpath := flowMarkerPath(f.dir, f.name)
	if fresh {
		for _, p := range []string{f.path, mpath} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	file, err := readFlowFile(f.path)
	if err != nil {
		return fmt.Errorf("checkpoint: flow %q: %w (delete the file, or open WithFresh, to start over)", f.name, err)
	}
	if file != nil {
		if m, ok := readFlowMarker(mpath); ok {
			applyMarker(file, file.Steps, m)
			for i := range file.Steps {
				if r := &file.Steps[i]; r.Status == StepRunning {
					// We hold the lock, so the run that started it is gone.
					r.Status = StepPending
					f.log.Warn("checkpoint: a step of the flow was interrupted; it runs again",
						"flow", f.name, "step", r.Name, "started", m.Started)
				}
			}
		}
	}
	f.file = file
	f.marker, err = os.OpenFile(mpath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	f.snaps, err = openSnapshotsIn(flowSnapsDir(f.dir, f.name), f.log)
	return err
}

// Step adds a step named name that runs fn. Steps run in the order they were
// added; a name identifies a step across runs, so it must be unique and not
// empty (a bad Step makes Run fail). fn gets the state to change in place,
// and a ctx that is cancelled when Run's is; returning an error or
// panicking fails the step and keeps the state from before it.
func (f *Flow[S]) Step(name string, fn func(ctx context.Context, s *S) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	switch {
	case name == "":
		err = errors.New("a step has an empty name")
	case fn == nil:
		err = fmt.Errorf("step %q has a nil func", name)
	case slices.ContainsFunc(f.steps, func(s flowStep[S]) bool { return s.name == name }):
		err = fmt.Errorf("step %q is added twice", name)
	}
	if err != nil {
		f.stepErr = errors.Join(f.stepErr, err)
		return
	}
	f.steps = append(f.steps, flowStep[S]{name, fn})
}

// Run runs the steps, starting where the saved flow stopped: at the first
// step that did not finish, with the state saved before it. initial is used
// only when nothing is saved yet (or with Restart); a resumed run logs the
// step it resumes at and ignores initial. When every step has succeeded,
// Run runs nothing and returns the final state, unless FromStep or Restart
// say otherwise.
//
// A flow saved with other steps than it has now is refused with an error
// wrapping ErrStepsChanged that lists both, unless steps were only appended:
// then the new steps run after the old ones, even on a finished flow.
//
// A step that returns an error or panics stops the run with a *StepError;
// the next Run starts at that step. If ctx is cancelled, Run stops before
// the next step and returns an error wrapping ctx.Err(); a step that returns
// an error once ctx is cancelled is taken as stopped, not failed, and runs
// again next time. Run returns the state after the last step, or on error
// the state saved before the step that did not finish.
func (f *Flow[S]) Run(ctx context.Context, initial S, opts ...RunOption) (S, error) {
	var zero S
	var ro runOptions
	for _, opt := range opts {
		opt(&ro)
	}
	f.mu.Lock()
	switch {
	case f.closed:
		f.mu.Unlock()
		return zero, ErrClosed
	case f.running:
		f.mu.Unlock()
		return zero, fmt.Errorf("checkpoint: flow %q: Run is already under way", f.name)
	case f.stepErr != nil:
		f.mu.Unlock()
		return zero, fmt.Errorf("checkpoint: flow %q: %w", f.name, f.stepErr)
	case len(f.steps) == 0:
		f.mu.Unlock()
		return zero, fmt.Errorf("checkpoint: flow %q has no steps", f.name)
	}
	f.running = true
	steps := slices.Clone(f.steps)
	saved := f.file
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running, f.live = false, nil
		f.mu.Unlock()
	}()

	start, state, recs, err := f.plan(steps, saved, initial, ro)
	if err != nil {
		return zero, err
	}
	f.mu.Lock()
	f.live = recs
	f.mu.Unlock()
	if start == len(steps) {
		f.log.Info("checkpoint: the flow is finished; nothing to run", "flow", f.name)
		return f.decode(state), nil
	}
	if saved == nil || ro.restart || ro.from != "" || start != saved.Next || len(recs) != len(saved.Steps) {
		if err := f.save(start, state); err != nil {
			return zero, err
		}
	}
	for i := start; i < len(steps); i++ {
		if err := ctx.Err(); err != nil {
			return f.decode(state), fmt.Errorf("checkpoint: flow %q stopped before step %q: %w", f.name, steps[i].name, err)
		}
		next, err := f.runStep(ctx, i, steps[i], state)
		if err != nil {
			return f.decode(state), err
		}
		state = next
	}
	return f.decode(state), nil
}

// plan decides where Run starts and from which state, and returns the step
// records the run works on.
func (f *Flow[S]) plan(steps []flowStep[S], saved *flowFile, initial S, ro runOptions) (int, rawJSON, []stepRecord, error) {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.name
	}
	fresh := func() (int, rawJSON, []stepRecord, error) {
		state, err := json.Marshal(initial)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("checkpoint: flow %q: the initial state cannot be saved: %w", f.name, err)
		}
		recs := make([]stepRecord, len(names))
		for i, n := range names {
			recs[i] = stepRecord{Name: n, Status: StepPending}
		}
		return 0, state, recs, nil
	}
	if saved == nil || ro.restart {
		if saved != nil {
			f.log.Info("checkpoint: the flow starts over", "flow", f.name)
		}
		return fresh()
	}
	old := make([]string, len(saved.Steps))
	for i, s := range saved.Steps {
		old[i] = s.Name
	}
	if len(old) > len(names) || !slices.Equal(old, names[:len(old)]) {
		return 0, nil, nil, fmt.Errorf("checkpoint: flow %q: saved with steps [%s], now [%s]: %w (only appending steps keeps the saved state; run with Restart to start over)",
			f.name, strings.Join(old, " "), strings.Join(names, " "), ErrStepsChanged)
	}
	recs := slices.Clone(saved.Steps)
	for _, n := range names[len(old):] {
		recs = append(recs, stepRecord{Name: n, Status: StepPending})
	}
	if ro.from == "" {
		if saved.Next < len(names) {
			f.log.Info("checkpoint: the flow resumes; the initial state given to Run is not used",
				"flow", f.name, "step", names[saved.Next], "done", saved.Next)
		}
		return saved.Next, saved.State, recs, nil
	}
	i := slices.Index(names, ro.from)
	var state rawJSON
	switch {
	case i < 0:
		return 0, nil, nil, fmt.Errorf("checkpoint: flow %q has no step %q", f.name, ro.from)
	case i == saved.Next:
		state = saved.State
	case len(recs[i].Input) > 0:
		state = recs[i].Input
	case i == 0:
		return fresh()
	default:
		return 0, nil, nil, fmt.Errorf("checkpoint: flow %q: step %q never started, so no state was saved before it", f.name, ro.from)
	}
	for j := i; j < len(recs); j++ {
		if recs[j].Status != StepPending {
			recs[j].Status = StepPending
		}
	}
	f.log.Info("checkpoint: the flow runs from a chosen step", "flow", f.name, "step", ro.from)
	return i, state, recs, nil
}

// runStep runs step i from state and saves the outcome. It returns the state
// after the step.
func (f *Flow[S]) runStep(ctx context.Context, i int, step flowStep[S], state rawJSON) (rawJSON, error) {
	var s S
	if err := json.Unmarshal(state, &s); err != nil {
		return nil, fmt.Errorf("checkpoint: flow %q: the state saved before step %q does not decode into %T: %w", f.name, step.name, s, err)
	}
	f.mu.Lock()
	r := &f.live[i]
	r.Status, r.Started, r.Finished, r.Error, r.Input = StepRunning, flowNow(), time.Time{}, "", state
	r.Attempts++
	m := runningMarker{Seq: f.file.Seq, Step: i, Attempt: r.Attempts, Started: r.Started}
	f.mu.Unlock()
	if err := writeMarker(f.marker, m); err != nil {
		f.log.Warn("checkpoint: could not mark the step as running", "flow", f.name, "step", step.name, "err", err)
	}

	err := callStep(ctx, step.fn, &s)
	var out rawJSON
	if err == nil {
		out, err = marshalState(&s)
		if err != nil {
			err = fmt.Errorf("the state after the step cannot be saved: %w", err)
		}
	}
	cancelled := err != nil && ctx.Err() != nil

	f.mu.Lock()
	r = &f.live[i]
	r.Finished = flowNow()
	switch {
	case err == nil:
		r.Status = StepDone
	case cancelled:
		r.Status = StepPending
	default:
		r.Status, r.Error = StepFailed, err.Error()
	}
	f.mu.Unlock()

	if err == nil {
		if serr := f.save(i+1, out); serr != nil {
			return nil, serr // the step runs again next time
		}
		return out, nil
	}
	if serr := f.save(i, state); serr != nil {
		f.log.Warn("checkpoint: could not record the step's outcome", "flow", f.name, "step", step.name, "err", serr)
	}
	if cancelled {
		return nil, fmt.Errorf("checkpoint: flow %q: step %q stopped: %w (%w)", f.name, step.name, ctx.Err(), err)
	}
	return nil, &StepError{Flow: f.name, Step: step.name, Err: err}
}

func callStep[S any](ctx context.Context, fn func(context.Context, *S) error, s *S) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return fn(ctx, s)
}

func marshalState(v any) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in a MarshalJSON: %v", p)
		}
	}()
	return json.Marshal(v)
}

// save writes the flow file: next is the step to run next and state the
// state before it; the step records are the run's live ones.
func (f *Flow[S]) save(next int, state rawJSON) error {
	f.mu.Lock()
	nf := &flowFile{Flow: f.name, Version: flowVersion, Updated: flowNow(), Next: next, Steps: slices.Clone(f.live), State: state}
	if f.file != nil {
		nf.Seq = f.file.Seq + 1
	}
	f.mu.Unlock()
	b, err := nf.marshal()
	if err == nil {
		err = writeFileAtomic(f.path, b, f.rename)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: flow %q: save the state: %w", f.name, err)
	}
	f.mu.Lock()
	f.file = nf
	f.mu.Unlock()
	return nil
}

// decode returns a fresh copy of a saved state.
func (f *Flow[S]) decode(state rawJSON) S {
	var s S
	if err := json.Unmarshal(state, &s); err != nil {
		f.log.Warn("checkpoint: the saved state does not decode", "flow", f.name, "err", err)
	}
	return s
}

// Steps returns the status of each step, in order: the steps added with Step,
// or before any, the steps as saved. During Run the step under way is
// StepRunning.
func (f *Flow[S]) Steps() []StepStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var recs []stepRecord
	switch {
	case f.live != nil:
		recs = f.live
	case f.file != nil:
		recs = f.file.Steps
	}
	if len(f.steps) == 0 {
		out := make([]StepStatus, len(recs))
		for i, r := range recs {
			out[i] = r.status()
		}
		return out
	}
	out := make([]StepStatus, len(f.steps))
	for i, s := range f.steps {
		if i < len(recs) && recs[i].Name == s.name {
			out[i] = recs[i].status()
		} else {
			out[i] = StepStatus{Name: s.name, Status: StepPending}
		}
	}
	return out
}

// StateBefore returns the state the named step started from on its latest
// run: for a failed step, the state it will start from next time.
func (f *Flow[S]) StateBefore(step string) (S, error) {
	var s S
	f.mu.Lock()
	var recs []stepRecord
	switch {
	case f.live != nil:
		recs = f.live
	case f.file != nil:
		recs = f.file.Steps
	}
	i := slices.IndexFunc(recs, func(r stepRecord) bool { return r.Name == step })
	var in rawJSON
	if i >= 0 {
		in = recs[i].Input
	}
	f.mu.Unlock()
	if len(in) == 0 {
		return s, fmt.Errorf("checkpoint: flow %q: step %q has not started", f.name, step)
	}
	if err := json.Unmarshal(in, &s); err != nil {
		return s, fmt.Errorf("checkpoint: flow %q: the state before step %q: %w", f.name, step, err)
	}
	return s, nil
}

// Snapshots returns the flow's own snapshots, kept in <name>_snapshots/
// beside the flow's file. They stay usable after Close.
func (f *Flow[S]) Snapshots() *Snapshots {
	return f.snaps
}

// Close releases the flow for the next NewFlow, here or in another process.
// It fails during Run; a second Close returns ErrClosed.
func (f *Flow[S]) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return ErrClosed
	case f.running:
		return fmt.Errorf("checkpoint: flow %q: Close during Run", f.name)
	}
	f.closed = true
	return errors.Join(f.run.finish(), f.closeFiles())
}

func (f *Flow[S]) closeFiles() error {
	var err error
	if f.marker != nil {
		err = f.marker.Close()
	}
	return errors.Join(err, f.lock.Close())
}

// flowNow is the time recorded in the flow file: UTC and without the monotonic
// reading, so that what Steps says before and after a reload is the same.
func flowNow() time.Time { return time.Now().UTC().Round(0) }
