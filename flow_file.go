package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The statuses of a step in StepStatus.
const (
	StepPending = "pending" // not run yet, to be run again, or stopped by a cancelled ctx
	StepRunning = "running" // started and not finished
	StepDone    = "done"
	StepFailed  = "failed"
)

// StepStatus is what is known of one step of a flow.
type StepStatus struct {
	Name     string        `json:"name"`
	Status   string        `json:"status"`   // StepPending, StepRunning, StepDone or StepFailed
	Attempts int           `json:"attempts"` // times the step was started, over all runs since the flow's start or Restart
	Started  time.Time     `json:"started,omitzero"`
	Finished time.Time     `json:"finished,omitzero"`  // zero while running
	Duration time.Duration `json:"duration,omitempty"` // Finished - Started, in nanoseconds in JSON
	Error    string        `json:"error,omitempty"`    // of a failed step
}

// flowFile is <name>_flow.json: the state to go on from and each step's
// history. It is replaced as a whole (writeFileAtomic) after every step, so
// a crash leaves the previous version or the next one.
type flowFile struct {
	Flow    string       `json:"flow"`
	Version int          `json:"version"`
	Seq     uint64       `json:"seq"` // bumped by every write; ties the running marker to this version
	Updated time.Time    `json:"updated"`
	Next    int          `json:"next"`  // index of the step to run next; len(Steps) when finished
	Steps   []stepRecord `json:"steps"` // in the order of the code that saved them
	State   rawJSON      `json:"state"` // the state before Steps[Next], or the final state
}

type stepRecord struct {
	Name     string    `json:"name"`
	Status   string    `json:"status"`
	Attempts int       `json:"attempts"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
	Input    rawJSON   `json:"input,omitempty"` // the state the step started from on its latest run
}

// rawJSON is json.RawMessage without the validation Marshal does on every
// write: the bytes come from json.Marshal or from the file itself.
type rawJSON = json.RawMessage

const flowVersion = 1

func (r stepRecord) status() StepStatus {
	s := StepStatus{Name: r.Name, Status: r.Status, Attempts: r.Attempts, Started: r.Started, Finished: r.Finished, Error: r.Error}
	if !r.Finished.IsZero() && !r.Started.IsZero() {
		s.Duration = r.Finished.Sub(r.Started)
	}
	return s
}

// marshal writes the file by hand: the states are spliced in as they are,
// so a large state is copied, not re-validated, on every step. One step per
// line keeps the file readable without jq.
func (f *flowFile) marshal() ([]byte, error) {
	head, err := json.Marshal(struct {
		Flow    string    `json:"flow"`
		Version int       `json:"version"`
		Seq     uint64    `json:"seq"`
		Updated time.Time `json:"updated"`
		Next    int       `json:"next"`
	}{f.Flow, f.Version, f.Seq, f.Updated, f.Next})
	if err != nil {
		return nil, err
	}
	size := len(head) + len(f.State) + 64
	for _, s := range f.Steps {
		size += len(s.Input) + 160 + len(s.Name) + len(s.Error)
	}
	b := make([]byte, 0, size)
	b = append(b, head[:len(head)-1]...)
	b = append(b, ",\n\"steps\": ["...)
	for i, s := range f.Steps {
		if i > 0 {
			b = append(b, ',')
		}
		in := s.Input
		s.Input = nil
		line, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		b = append(b, "\n  "...)
		if len(in) == 0 {
			b = append(b, line...)
			continue
		}
		b = append(b, line[:len(line)-1]...)
		b = append(b, `,"input":`...)
		b = append(b, in...)
		b = append(b, '}')
	}
	b = append(b, "\n],\n\"state\": "...)
	b = append(b, f.State...)
	b = append(b, "\n}\n"...)
	return b, nil
}

func flowPath(dir, name string) string       { return filepath.Join(dir, name+"_flow.json") }
func flowMarkerPath(dir, name string) string { return filepath.Join(dir, name+"_flow.running") }
func flowSnapsDir(dir, name string) string   { return filepath.Join(dir, name+"_snapshots") }

// readFlowFile reads a flow file; a missing one is (nil, nil).
func readFlowFile(path string) (*flowFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f flowFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case f.Version != flowVersion:
		return nil, fmt.Errorf("%s: version %d, want %d", path, f.Version, flowVersion)
	case f.Next < 0 || f.Next > len(f.Steps):
		return nil, fmt.Errorf("%s: next step %d of %d", path, f.Next, len(f.Steps))
	case len(f.State) == 0:
		return nil, fmt.Errorf("%s: no state", path)
	}
	return &f, nil
}

// The running marker, <name>_flow.running, says which step is under way. It
// is overwritten in place before each step, without fsync: it survives a
// killed process, which is what it is for (Attempts counts a step that was
// killed; `checkpoint status` shows the step a live run is in), and after a
// power cut the worst is a miscount. It only counts if its seq is the flow
// file's: the file is rewritten after each step, which retires the marker.
type runningMarker struct {
	Seq     uint64    `json:"seq"`
	Step    int       `json:"step"`
	Attempt int       `json:"attempt"`
	Started time.Time `json:"started"`
}

func writeMarker(f *os.File, m runningMarker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	// A shorter marker leaves the old one's tail after a newline; the
	// reader decodes the first value only.
	_, err = f.WriteAt(append(b, '\n'), 0)
	return err
}

func readFlowMarker(path string) (runningMarker, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return runningMarker{}, false
	}
	var m runningMarker
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		return runningMarker{}, false
	}
	return m, true
}

// applyMarker marks the step the marker names as running in recs, if the
// marker belongs to this version of the file.
func applyMarker(f *flowFile, recs []stepRecord, m runningMarker) {
	if m.Seq != f.Seq || m.Step < 0 || m.Step >= len(recs) || m.Step != f.Next {
		return
	}
	r := &recs[m.Step]
	r.Status, r.Attempts, r.Started, r.Finished, r.Error = StepRunning, m.Attempt, m.Started, time.Time{}, ""
}

// ReadFlowSteps reads the steps of the flow called name in dir, as saved,
// without taking the lock: it is for tools that look at a flow while it may
// be running. A step killed with its process shows as running until the
// next Run. The error wraps fs.ErrNotExist if there is no such flow.
func ReadFlowSteps(dir, name string) ([]StepStatus, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := readFlowFile(flowPath(dir, name))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read flow %q: %w", name, err)
	}
	if f == nil {
		return nil, fmt.Errorf("checkpoint: no flow %q in %s: %w", name, dir, fs.ErrNotExist)
	}
	recs := f.Steps
	if m, ok := readFlowMarker(flowMarkerPath(dir, name)); ok {
		recs = append([]stepRecord(nil), recs...)
		applyMarker(f, recs, m)
	}
	out := make([]StepStatus, len(recs))
	for i, r := range recs {
		out[i] = r.status()
	}
	return out, nil
}
