package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type trainState struct {
	Seed  int                `json:"seed"`
	Trail []string           `json:"trail"`
	Vals  map[string]int     `json:"vals"`
	When  time.Time          `json:"when"`
	Deep  *struct{ X []int } `json:"deep"`
}

// counted is a flow of steps a, b, c, each appending its name to Trail and
// counting its calls; fail, if set, runs in place of a step's body.
type counted struct {
	calls map[string]*atomic.Int32
	fail  map[string]func(*trainState) error
}

func newFlowT(t *testing.T, dir string, c *counted, names ...string) *Flow[trainState] {
	t.Helper()
	f, err := NewFlow[trainState]("train", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	for _, n := range names {
		if c.calls[n] == nil {
			c.calls[n] = new(atomic.Int32)
		}
		f.Step(n, func(ctx context.Context, s *trainState) error {
			c.calls[n].Add(1)
			// Half-change the state before any failure: it must not stick.
			s.Trail = append(s.Trail, n)
			if s.Vals == nil {
				s.Vals = map[string]int{}
			}
			s.Vals[n]++
			if fn := c.fail[n]; fn != nil {
				return fn(s)
			}
			return nil
		})
	}
	return f
}

func newCounted() *counted {
	return &counted{calls: map[string]*atomic.Int32{}, fail: map[string]func(*trainState) error{}}
}

func (c *counted) n(name string) int32 {
	if c.calls[name] == nil {
		return 0
	}
	return c.calls[name].Load()
}

func statuses(steps []StepStatus) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%s:%s:%d ", s.Name, s.Status, s.Attempts)
	}
	return strings.TrimSpace(b.String())
}

func TestFlowResumesAtFailedStepWithItsState(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			boom := errors.New("boom")
			c := newCounted()
			c.fail["b"] = func(s *trainState) error {
				s.Deep = &struct{ X []int }{X: []int{1}}
				s.Seed = -1
				if how == "panic" {
					panic("half done")
				}
				return boom
			}
			f := newFlowT(t, dir, c, "a", "b", "c")
			when := time.Date(2026, 12, 1, 10, 0, 0, 123, time.UTC)
			_, err := f.Run(ctx, trainState{Seed: 7, When: when})
			var se *StepError
			require.ErrorAs(t, err, &se)
			require.Equal(t, "b", se.Step)
			if how == "error" {
				require.ErrorIs(t, err, boom)
			} else {
				require.Contains(t, err.Error(), "panic: half done")
			}
			require.Equal(t, "a:done:1 b:failed:1 c:pending:0", statuses(f.Steps()))
			require.Contains(t, f.Steps()[1].Error, map[string]string{"error": "boom", "panic": "half done"}[how])

			afterA := trainState{Seed: 7, When: when, Trail: []string{"a"}, Vals: map[string]int{"a": 1}}
			before, err := f.StateBefore("b")
			require.NoError(t, err)
			require.Equal(t, afterA, before)
			require.NoError(t, f.Close())

			// The next run, with b fixed, starts at b from exactly that state.
			c.fail["b"] = func(s *trainState) error {
				require.Equal(t, trainState{Seed: 7, When: when, Trail: []string{"a", "b"}, Vals: map[string]int{"a": 1, "b": 1}}, *s)
				return nil
			}
			f = newFlowT(t, dir, c, "a", "b", "c")
			final, err := f.Run(ctx, trainState{Seed: 99}) // ignored: the flow resumes
			require.NoError(t, err)
			require.Equal(t, []int32{1, 2, 1}, []int32{c.n("a"), c.n("b"), c.n("c")})
			require.Equal(t, trainState{Seed: 7, When: when, Trail: []string{"a", "b", "c"}, Vals: map[string]int{"a": 1, "b": 1, "c": 1}}, final)
			steps := f.Steps()
			require.Equal(t, "a:done:1 b:done:2 c:done:1", statuses(steps))
			for _, s := range steps {
				require.False(t, s.Started.IsZero())
				require.Equal(t, s.Finished.Sub(s.Started), s.Duration)
				require.Empty(t, s.Error)
			}

			// A finished flow is not redone; Run returns the final state.
			again, err := f.Run(ctx, trainState{})
			require.NoError(t, err)
			require.Equal(t, final, again)
			require.Equal(t, []int32{1, 2, 1}, []int32{c.n("a"), c.n("b"), c.n("c")})
		})
	}
}

func TestFlowFromStepAndRestart(t *testing.T) {
	tests := []struct {
		name      string
		opts      []RunOption
		wantCalls []int32 // a, b, c, after the first full run
		wantTrail []string
		wantErr   string
	}{
		{"nothing", nil, []int32{1, 1, 1}, []string{"a", "b", "c"}, ""},
		{"from b", []RunOption{FromStep("b")}, []int32{1, 2, 2}, []string{"a", "b", "c"}, ""},
		{"from c", []RunOption{FromStep("c")}, []int32{1, 1, 2}, []string{"a", "b", "c"}, ""},
		{"from a", []RunOption{FromStep("a")}, []int32{2, 2, 2}, []string{"a", "b", "c"}, ""},
		{"restart", []RunOption{Restart()}, []int32{2, 2, 2}, []string{"new", "a", "b", "c"}, ""},
		{"unknown", []RunOption{FromStep("zz")}, []int32{1, 1, 1}, nil, `no step "zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, c, ctx := t.TempDir(), newCounted(), context.Background()
			f := newFlowT(t, dir, c, "a", "b", "c")
			_, err := f.Run(ctx, trainState{Trail: []string{"first"}})
			require.NoError(t, err)
			final, err := f.Run(ctx, trainState{Trail: []string{"new"}}, tt.opts...)
			require.Equal(t, tt.wantCalls, []int32{c.n("a"), c.n("b"), c.n("c")})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			want := tt.wantTrail
			if want[0] != "new" {
				want = append([]string{"first"}, want...)
			}
			require.Equal(t, want, final.Trail)
			require.Equal(t, "a:done b:done c:done", strings.Join(func() []string {
				var out []string
				for _, s := range f.Steps() {
					out = append(out, s.Name+":"+s.Status)
				}
				return out
			}(), " "))
		})
	}
}

func TestFlowFromStepNeverStarted(t *testing.T) {
	dir, c, ctx := t.TempDir(), newCounted(), context.Background()
	c.fail["a"] = func(*trainState) error { return errors.New("no") }
	f := newFlowT(t, dir, c, "a", "b", "c")
	_, err := f.Run(ctx, trainState{})
	require.Error(t, err)
	_, err = f.Run(ctx, trainState{}, FromStep("c"))
	require.ErrorContains(t, err, `step "c" never started`)
	_, err = f.StateBefore("c")
	require.ErrorContains(t, err, "has not started")
	require.Equal(t, int32(1), c.n("a"))
}

// A FromStep or Restart that is killed before its first step finishes must
// not fall back to the old position: the new start is saved at once.
func TestFlowRestartIsSavedBeforeTheFirstStep(t *testing.T) {
	dir, c, ctx := t.TempDir(), newCounted(), context.Background()
	f := newFlowT(t, dir, c, "a", "b")
	_, err := f.Run(ctx, trainState{})
	require.NoError(t, err)
	c.fail["a"] = func(*trainState) error { return errors.New("stop") }
	_, err = f.Run(ctx, trainState{Seed: 5}, Restart())
	require.Error(t, err)
	require.NoError(t, f.Close())
	f = newFlowT(t, dir, c, "a", "b")
	c.fail["a"] = nil
	final, err := f.Run(ctx, trainState{})
	require.NoError(t, err)
	require.Equal(t, 5, final.Seed)
	require.Equal(t, []string{"a", "b"}, final.Trail)
}

func TestFlowChangedSteps(t *testing.T) {
	tests := []struct {
		now     []string
		opts    []RunOption
		wantErr bool
		ran     []string // steps that run
	}{
		{now: []string{"a", "b", "c"}, ran: nil},
		{now: []string{"a", "b", "c", "d"}, ran: []string{"d"}},
		{now: []string{"a", "b", "c", "d", "e"}, ran: []string{"d", "e"}},
		{now: []string{"a", "c", "b"}, wantErr: true},
		{now: []string{"a", "b"}, wantErr: true},
		{now: []string{"a", "x", "c"}, wantErr: true},
		{now: []string{"x", "a", "b", "c"}, wantErr: true},
		{now: []string{"a", "c", "b"}, opts: []RunOption{Restart()}, ran: []string{"a", "c", "b"}},
		{now: []string{"a", "c", "b"}, opts: []RunOption{FromStep("c")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.now, ""), func(t *testing.T) {
			dir, ctx := t.TempDir(), context.Background()
			f := newFlowT(t, dir, newCounted(), "a", "b", "c")
			_, err := f.Run(ctx, trainState{})
			require.NoError(t, err)
			require.NoError(t, f.Close())

			c := newCounted()
			f = newFlowT(t, dir, c, tt.now...)
			final, err := f.Run(ctx, trainState{}, tt.opts...)
			var ran []string
			for _, n := range tt.now {
				if c.n(n) > 0 {
					ran = append(ran, n)
				}
			}
			if tt.wantErr {
				require.ErrorIs(t, err, ErrStepsChanged)
				require.ErrorContains(t, err, "saved with steps [a b c], now ["+strings.Join(tt.now, " ")+"]")
				require.Empty(t, ran)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.ran, ran)
			if tt.opts == nil {
				require.Equal(t, append([]string{"a", "b", "c"}, tt.ran...), final.Trail)
			}
		})
	}
}

func TestNewFlowRefusesStatesThatDoNotRoundTrip(t *testing.T) {
	type hidden struct{ a int }
	type dash struct {
		A int `json:"-"`
	}
	type withChan struct{ C chan int }
	type withFunc struct{ F func() }
	type withIface struct {
		R interface{ Read([]byte) (int, error) }
	}
	type badKey struct{ M map[[2]int]string }
	type ok struct {
		A   int
		B   []string
		M   map[int]float64
		T   time.Time
		P   *ok // recursive
		Any any
		Raw json.RawMessage
		hiddenOK
	}
	type complexField struct{ Z complex128 }
	tests := []struct {
		name  string
		check func() error
		bad   string
	}{
		{"ok", tryFlow[ok], ""},
		{"int", tryFlow[int], ""},
		{"map any", tryFlow[map[string]any], ""},
		{"unexported", tryFlow[hidden], "field a is unexported"},
		{"dash", tryFlow[dash], "excluded from JSON"},
		{"chan", tryFlow[withChan], "chan"},
		{"func", tryFlow[withFunc], "func"},
		{"interface", tryFlow[withIface], "cannot be decoded"},
		{"map key", tryFlow[badKey], "map key"},
		{"complex", tryFlow[complexField], "complex128"},
		{"chan itself", tryFlow[chan int], "chan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check()
			if tt.bad == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "cannot be used")
			require.ErrorContains(t, err, tt.bad)
		})
	}
}

type hiddenOK struct{ Promoted int }

func tryFlow[S any]() error {
	dir, err := os.MkdirTemp("", "flowtype")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f, err := NewFlow[S]("t", WithDir(dir), WithLogger(quietLogger()))
	if err != nil {
		return err
	}
	return f.Close()
}

func TestFlowInitialStateThatCannotBeSaved(t *testing.T) {
	f, err := NewFlow[float64]("nan", WithDir(t.TempDir()), WithLogger(quietLogger()))
	require.NoError(t, err)
	defer f.Close()
	ran := false
	f.Step("a", func(context.Context, *float64) error { ran = true; return nil })
	_, err = f.Run(context.Background(), math.NaN())
	require.ErrorContains(t, err, "initial state cannot be saved")
	require.False(t, ran)

	// A step that makes the state unsaveable fails, and its input stays.
	f.Step("b", func(_ context.Context, s *float64) error { *s = math.Inf(1); return nil })
	_, err = f.Run(context.Background(), 1)
	var se *StepError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "b", se.Step)
	require.ErrorContains(t, err, "cannot be saved")
	before, err := f.StateBefore("b")
	require.NoError(t, err)
	require.Equal(t, 1.0, before)
}

func TestFlowCancel(t *testing.T) {
	t.Run("inside a step", func(t *testing.T) {
		dir, c := t.TempDir(), newCounted()
		ctx, cancel := context.WithCancel(context.Background())
		c.fail["b"] = func(*trainState) error {
			cancel()
			return fmt.Errorf("interrupted: %w", context.Canceled)
		}
		f := newFlowT(t, dir, c, "a", "b", "c")
		_, err := f.Run(ctx, trainState{})
		require.ErrorIs(t, err, context.Canceled)
		var se *StepError
		require.False(t, errors.As(err, &se), "a cancelled step is not a failed one")
		require.Equal(t, "a:done:1 b:pending:1 c:pending:0", statuses(f.Steps()))
		require.Empty(t, f.Steps()[1].Error)
		c.fail["b"] = nil
		final, err := f.Run(context.Background(), trainState{})
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b", "c"}, final.Trail)
		require.Equal(t, []int32{1, 2, 1}, []int32{c.n("a"), c.n("b"), c.n("c")})
	})
	t.Run("between steps", func(t *testing.T) {
		dir, c := t.TempDir(), newCounted()
		ctx, cancel := context.WithCancel(context.Background())
		c.fail["a"] = func(*trainState) error { cancel(); return nil }
		f := newFlowT(t, dir, c, "a", "b")
		_, err := f.Run(ctx, trainState{})
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorContains(t, err, `stopped before step "b"`)
		require.Equal(t, "a:done:1 b:pending:0", statuses(f.Steps()))
	})
}

func TestFlowSaveFailureRedoesTheStep(t *testing.T) {
	dir, c, ctx := t.TempDir(), newCounted(), context.Background()
	var fail atomic.Bool
	rename := func(o, n string) error {
		if fail.Load() {
			return &os.LinkError{Op: "rename", Old: o, New: n, Err: syscall.EIO}
		}
		return os.Rename(o, n)
	}
	f, err := NewFlow[trainState]("train", WithDir(dir), WithLogger(quietLogger()), withRename(rename))
	require.NoError(t, err)
	c.calls["a"], c.calls["b"] = new(atomic.Int32), new(atomic.Int32)
	f.Step("a", func(_ context.Context, s *trainState) error { c.calls["a"].Add(1); s.Seed++; return nil })
	f.Step("b", func(_ context.Context, s *trainState) error {
		c.calls["b"].Add(1)
		s.Seed += 10
		fail.Store(true)
		return nil
	})
	_, err = f.Run(ctx, trainState{})
	require.ErrorIs(t, err, syscall.EIO)
	require.NoError(t, f.Close())
	fail.Store(false)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		require.NotContains(t, e.Name(), ".tmp-", "no temporary file is left")
	}

	f, err = NewFlow[trainState]("train", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	defer f.Close()
	f.Step("a", func(_ context.Context, s *trainState) error { c.calls["a"].Add(1); s.Seed++; return nil })
	f.Step("b", func(_ context.Context, s *trainState) error { c.calls["b"].Add(1); s.Seed += 10; return nil })
	final, err := f.Run(ctx, trainState{})
	require.NoError(t, err)
	require.Equal(t, 11, final.Seed)
	require.Equal(t, []int32{1, 2}, []int32{c.n("a"), c.n("b")})
}

func TestFlowLockAndLifecycle(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFlow[int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	_, err = NewFlow[int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.ErrorIs(t, err, ErrLocked)
	_, err = Open[int, int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.ErrorIs(t, err, ErrLocked, "a flow and a checkpoint of one name exclude each other")

	_, err = f.Run(context.Background(), 0)
	require.ErrorContains(t, err, "no steps")
	f.Step("", func(context.Context, *int) error { return nil })
	f.Step("x", nil)
	f.Step("a", func(context.Context, *int) error { return nil })
	f.Step("a", func(context.Context, *int) error { return nil })
	_, err = f.Run(context.Background(), 0)
	require.ErrorContains(t, err, "empty name")
	require.ErrorContains(t, err, "nil func")
	require.ErrorContains(t, err, `"a" is added twice`)

	g, err := NewFlow[int]("other", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	inside := make(chan struct{})
	release := make(chan struct{})
	g.Step("wait", func(context.Context, *int) error { close(inside); <-release; return nil })
	done := make(chan error)
	go func() { _, err := g.Run(context.Background(), 0); done <- err }()
	<-inside
	_, err = g.Run(context.Background(), 0)
	require.ErrorContains(t, err, "already under way")
	require.ErrorContains(t, g.Close(), "Close during Run")
	require.Equal(t, StepRunning, g.Steps()[0].Status)
	steps, err := ReadFlowSteps(dir, "other")
	require.NoError(t, err)
	require.Equal(t, StepRunning, steps[0].Status, "another process sees the step under way")
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, g.Close())
	require.ErrorIs(t, g.Close(), ErrClosed)
	_, err = g.Run(context.Background(), 0)
	require.ErrorIs(t, err, ErrClosed)

	require.NoError(t, f.Close())
	r, err := Open[int, int]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	require.NoError(t, r.Close())

	_, err = NewFlow[int]("../x", WithDir(dir))
	require.Error(t, err)
}

func TestFlowFileIsPlainJSON(t *testing.T) {
	dir, c := t.TempDir(), newCounted()
	c.fail["b"] = func(*trainState) error { return errors.New(`a "quoted" error`) }
	f := newFlowT(t, dir, c, "a", "b")
	_, err := f.Run(context.Background(), trainState{Seed: 3})
	require.Error(t, err)

	b, err := os.ReadFile(filepath.Join(dir, "train_flow.json"))
	require.NoError(t, err)
	var doc struct {
		Flow  string
		Next  int
		State trainState
		Steps []struct {
			Name, Status, Error string
			Attempts            int
			Input               *trainState
		}
	}
	require.NoError(t, json.Unmarshal(b, &doc), "%s", b)
	require.Equal(t, "train", doc.Flow)
	require.Equal(t, 1, doc.Next)
	require.Equal(t, []string{"a"}, doc.State.Trail)
	require.Equal(t, "failed", doc.Steps[1].Status)
	require.Equal(t, `a "quoted" error`, doc.Steps[1].Error)
	require.Equal(t, 3, doc.Steps[0].Input.Seed)
	require.Equal(t, doc.State, *doc.Steps[1].Input)

	steps, err := ReadFlowSteps(dir, "train")
	require.NoError(t, err)
	require.Equal(t, f.Steps(), steps)
	_, err = ReadFlowSteps(dir, "nope")
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestNewFlowRefusesADamagedFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x_flow.json"), []byte(`{"flow":"x","version":1,"next":0,"steps":[`), 0o644))
	_, err := NewFlow[int]("x", WithDir(dir), WithLogger(quietLogger()))
	require.ErrorContains(t, err, "WithFresh")
	f, err := NewFlow[int]("x", WithDir(dir), WithLogger(quietLogger()), WithFresh())
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// A marker left by a killed run counts the attempt and leaves the step to
// run again.
func TestFlowInterruptedStepCounts(t *testing.T) {
	dir, c, ctx := t.TempDir(), newCounted(), context.Background()
	f := newFlowT(t, dir, c, "a", "b")
	c.fail["a"] = func(*trainState) error { return errors.New("x") }
	_, err := f.Run(ctx, trainState{})
	require.Error(t, err)
	require.NoError(t, f.Close())
	// What a run killed inside step a on its second attempt leaves.
	seq := f.file.Seq
	m, err := os.OpenFile(flowMarkerPath(dir, "train"), os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, writeMarker(m, runningMarker{Seq: seq, Step: 0, Attempt: 2, Started: time.Now()}))
	require.NoError(t, m.Close())
	steps, err := ReadFlowSteps(dir, "train")
	require.NoError(t, err)
	require.Equal(t, "a:running:2 b:pending:0", statuses(steps))

	c.fail["a"] = nil
	f = newFlowT(t, dir, c, "a", "b")
	require.Equal(t, "a:pending:2 b:pending:0", statuses(f.Steps()))
	_, err = f.Run(ctx, trainState{})
	require.NoError(t, err)
	require.Equal(t, "a:done:3 b:done:1", statuses(f.Steps()))

	// A marker of an older version of the file does not count.
	steps, err = ReadFlowSteps(dir, "train")
	require.NoError(t, err)
	require.Equal(t, "a:done:3 b:done:1", statuses(steps))
}
