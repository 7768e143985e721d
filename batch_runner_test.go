package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// batchSink is a writer that several goroutines may use.
type batchSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *batchSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (s *batchSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// batchRecorder is a display that keeps what it was asked to draw.
type batchRecorder struct {
	mu       sync.Mutex
	starts   []snapshot
	updates  []snapshot
	final    *snapshot
	complete bool
}

func (d *batchRecorder) start(s snapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.starts = append(d.starts, s)
}

func (d *batchRecorder) update(s snapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.updates = append(d.updates, s)
}

func (d *batchRecorder) finish(s snapshot, complete bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.final, d.complete = &s, complete
}

func batchOpen(t testing.TB, dir string, opts ...Option) *BatchRunner[int, int] {
	t.Helper()
	opts = append([]Option{WithDir(dir), WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	b, err := OpenBatch[int, int]("batch", opts...)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// batchRecord makes b draw into a new batchRecorder.
func batchRecord(b *BatchRunner[int, int]) *batchRecorder {
	d := &batchRecorder{}
	b.newDisplay = func(io.Writer, time.Duration, int64) display { return d }
	return d
}

// batchTerminal makes b draw a terminal bar, 100 columns wide, into out.
func batchTerminal(b *BatchRunner[int, int], out io.Writer) {
	b.newDisplay = func(_ io.Writer, _ time.Duration, total int64) display {
		return newBarDisplay(out, total, func() int { return 100 })
	}
}

func TestIterateWithProgressCountsOnResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		items := slices.Collect(procInts(1000))

		// First run: 300 items, one of them failed, then the job dies.
		b := batchOpen(t, dir)
		first := batchRecord(b)
		for i, item := range b.IterateWithProgress(items, procKey, "work") {
			if i == 300 {
				break
			}
			var err error
			if item == 42 {
				err = b.SaveError(item, errors.New("bad"))
			} else {
				err = b.SaveResult(item, item)
			}
			require.NoError(t, err)
			time.Sleep(time.Millisecond)
		}
		require.NotNil(t, first.final)
		assert.False(t, first.complete, "a loop left with break is not complete")
		assert.Equal(t, int64(300), first.final.done)
		assert.Equal(t, int64(1), first.final.failed)
		require.NoError(t, b.Close())

		// Second run: starts at the 299 completed (42 is retried).
		b = batchOpen(t, dir)
		second := batchRecord(b)
		yielded := 0
		for _, item := range b.IterateWithProgress(items, procKey, "work") {
			yielded++
			require.NoError(t, b.SaveResult(item, item))
			time.Sleep(time.Millisecond)
		}
		assert.Equal(t, 701, yielded)
		require.NotEmpty(t, second.starts)
		start := second.starts[0]
		assert.Equal(t, int64(299), start.before, "the bar starts at the items done before")
		assert.Equal(t, int64(1000), start.total)
		require.NotNil(t, second.final)
		assert.True(t, second.complete)
		assert.Equal(t, snapshot{desc: "work", total: 1000, done: 1000, before: 299, now: 701},
			snapshot{desc: second.final.desc, total: second.final.total, done: second.final.done,
				before: second.final.before, now: second.final.now, failed: second.final.failed})
		// Each drawn state counts up, never past the total.
		last := int64(0)
		for _, s := range append(second.starts, second.updates...) {
			assert.GreaterOrEqual(t, s.done, last)
			assert.LessOrEqual(t, s.done, int64(1000))
			last = s.done
		}
		assert.Greater(t, len(second.updates), 1, "the display is redrawn while the loop runs")
	})
}

func TestProgressAdvancesOnSaveNotOnYield(t *testing.T) {
	b := batchOpen(t, t.TempDir())
	b.newDisplay = func(io.Writer, time.Duration, int64) display { return &batchRecorder{} }
	for _, item := range b.IterateWithProgress([]int{1, 2, 3}, procKey, "") {
		p := b.active.Load()
		require.NotNil(t, p)
		before := p.snapshot(time.Now()).done
		// A failure, then a result on retry: one item, counted once.
		require.NoError(t, b.SaveError(item, errors.New("flaky")))
		assert.Equal(t, int64(1), p.failed.Load())
		require.NoError(t, b.SaveResult(item, item))
		s := p.snapshot(time.Now())
		assert.Equal(t, before+1, s.done)
		assert.Zero(t, s.failed, "the failure was cleared by the result")
	}
	assert.Nil(t, b.active.Load(), "the bar is detached after the loop")
}

func TestIterateWithProgressDuplicateKeys(t *testing.T) {
	b := batchOpen(t, t.TempDir())
	rec := batchRecord(b)
	for _, item := range b.IterateWithProgress([]int{1, 2, 1, 3, 2}, procKey, "dups") {
		require.NoError(t, b.SaveResult(item, item))
	}
	require.NotNil(t, rec.final)
	assert.Equal(t, int64(5), rec.final.done, "every item of the input is accounted for")
	assert.Equal(t, int64(3), rec.final.now)
}

func TestProgressPlainLinesWhenNotATerminal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &batchSink{}
		b := batchOpen(t, t.TempDir(), WithProgressWriter(out), WithProgressInterval(time.Second))
		items := slices.Collect(procInts(1000))
		for _, item := range items[:200] {
			require.NoError(t, b.SaveResult(item, item))
		}
		for _, item := range b.IterateWithProgress(items, procKey, "plain") {
			time.Sleep(10 * time.Millisecond) // 8 seconds in all
			var err error
			if item%100 == 0 {
				err = b.SaveError(item, errors.New("bad"))
			} else {
				err = b.SaveResult(item, item)
			}
			require.NoError(t, err)
		}
		text := out.String()
		assert.NotContains(t, text, "\r")
		assert.NotContains(t, text, "\x1b")
		require.True(t, strings.HasSuffix(text, "\n"))
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		// A line at start, about one a second, and the summary.
		assert.GreaterOrEqual(t, len(lines), 8)
		assert.LessOrEqual(t, len(lines), 11)
		assert.Equal(t, "plain: resumed at 200/1000 (20% done before)", lines[0])
		for _, l := range lines[1 : len(lines)-1] {
			assert.Regexp(t, `^plain: \d+/1000 \(\d+%\), \d failed, (99|100|101)/s, ETA \d+\.\ds$`, l)
		}
		assert.Equal(t, "plain: finished 1000/1000 in 8.0s, 800 processed in this run (100/s), 8 failed", lines[len(lines)-1])
	})
}

func TestProgressToAFileIsPlain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.log")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	b := batchOpen(t, t.TempDir(), WithProgressWriter(f))
	for _, item := range b.IterateWithProgress(slices.Collect(procInts(50)), procKey, "file") {
		require.NoError(t, b.SaveResult(item, item))
	}
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Regexp(t, `^file: finished 50/50 in \d+\.\ds, 50 processed in this run \(.*\), 0 failed\n$`, string(text))
}

func TestProgressBarInATerminal(t *testing.T) {
	cases := []struct {
		name      string
		done      int // saved before the loop
		stopAfter int // break after this many; -1 runs to the end
		panics    bool
		want      string
	}{
		{"runs to the end", 0, -1, false, "100% |"},
		{"break", 0, 10, false, "bar: stopped at 10/40"},
		{"panic in the body", 0, 10, true, "bar: stopped at 10/40"},
		{"resumed", 25, -1, false, "bar: done 40/40"},
		{"nothing left", 40, -1, false, "bar: nothing to do, 40/40 already done"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := &batchSink{}
			b := batchOpen(t, t.TempDir())
			batchTerminal(b, out)
			items := slices.Collect(procInts(40))
			for _, item := range items[:tc.done] {
				require.NoError(t, b.SaveResult(item, item))
			}
			loop := func() {
				n := 0
				for _, item := range b.IterateWithProgress(items, procKey, "bar") {
					if n == tc.stopAfter {
						if tc.panics {
							panic("body broke")
						}
						break
					}
					n++
					require.NoError(t, b.SaveResult(item, item))
				}
			}
			if tc.panics {
				assert.PanicsWithValue(t, "body broke", loop)
			} else {
				loop()
			}
			text := out.String()
			assert.Contains(t, text, tc.want)
			assert.Contains(t, text, "\r", "a terminal is redrawn in place")
			assert.True(t, strings.HasSuffix(text, "\n"), "the cursor is left on a fresh line: %q", text)
			assert.Equal(t, 1, strings.Count(text, "\n"))
			assert.NotContains(t, strings.ToLower(text), "exceed")
			for _, line := range strings.Split(text, "\r") {
				assert.LessOrEqual(t, len([]rune(strings.TrimSuffix(line, "\x1b[0K\n"))), 100, "a line wider than the terminal wraps")
			}
			assert.Nil(t, b.active.Load())
		})
	}
}

func TestProgressBarNeverSeesAFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "tty"))
	require.NoError(t, err)
	defer f.Close()
	d := newBarDisplay(f, 10, func() int { return 80 })
	_, isFile := d.w.(*os.File)
	assert.False(t, isFile, "progressbar would Sync an *os.File on every redraw")
	d.start(snapshot{desc: "x", total: 10})
	d.finish(snapshot{desc: "x", total: 10, done: 10, now: 10}, true)
	text, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	assert.Contains(t, string(text), "x: done 10/10")
}

func TestBatchProcessShowsProgress(t *testing.T) {
	for _, withTotal := range []bool{true, false} {
		t.Run(fmt.Sprintf("total=%v", withTotal), func(t *testing.T) {
			b := batchOpen(t, t.TempDir())
			for i := range 30 {
				require.NoError(t, b.SaveResult(i, i))
			}
			rec := batchRecord(b)
			opts := []ProcessOption{WithWorkers(4), WithDescription("proc")}
			want := int64(-1)
			if withTotal {
				opts = append(opts, WithTotal(100))
				want = 100
			}
			sum, err := b.Process(t.Context(), procInts(100), procKey, func(ctx context.Context, i int) (any, error) {
				if i%10 == 5 {
					return nil, errors.New("bad")
				}
				return i, nil
			}, opts...)
			require.NoError(t, err)
			assert.Equal(t, 30, sum.Skipped)
			require.NotNil(t, rec.final)
			assert.True(t, rec.complete)
			s := *rec.final
			assert.Equal(t, "proc", s.desc)
			assert.Equal(t, want, s.total)
			assert.Equal(t, int64(100), s.done)
			assert.Equal(t, int64(30), s.before)
			assert.Equal(t, int64(sum.Processed), s.now)
			assert.Equal(t, int64(sum.Failed), s.failed)
		})
	}
}

func TestBatchProcessStoppedBarAndNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	out := &batchSink{}
	b := batchOpen(t, t.TempDir())
	batchTerminal(b, out)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := b.Process(ctx, procInts(1000), procKey, func(ctx context.Context, i int) (any, error) {
		if i == 50 {
			cancel()
		}
		return i, nil
	}, WithWorkers(8)) // no WithTotal: a spinner
	require.ErrorIs(t, err, context.Canceled)
	procWaitGoroutines(t, base)
	text := out.String()
	assert.Contains(t, text, "batch: stopped at")
	assert.True(t, strings.HasSuffix(text, "\n"))
}

func TestOneProgressDisplayAtATime(t *testing.T) {
	b := batchOpen(t, t.TempDir())
	outer := batchRecord(b)
	for _, item := range b.IterateWithProgress([]int{1, 2}, procKey, "outer") {
		inner := batchRecord(b)
		for _, x := range b.IterateWithProgress([]int{10 + item}, procKey, "inner") {
			require.NoError(t, b.SaveResult(x, x))
		}
		assert.Nil(t, inner.final, "the inner loop runs without a bar")
		require.NoError(t, b.SaveResult(item, item))
	}
	require.NotNil(t, outer.final)
	assert.Equal(t, int64(2), outer.final.done)
}

func TestIterateWithProgressOnAClosedRunner(t *testing.T) {
	b := batchOpen(t, t.TempDir())
	rec := batchRecord(b)
	require.NoError(t, b.Close())
	for range b.IterateWithProgress([]int{1, 2, 3}, procKey, "") {
		t.Fatal("yielded after Close")
	}
	assert.ErrorIs(t, b.Err(), ErrClosed)
	assert.Nil(t, rec.final)
}

func TestProgressText(t *testing.T) {
	cases := []struct {
		s    snapshot
		run  string
		fin  string
		done bool
	}{
		{snapshot{desc: "a", total: 10, done: 4, now: 4, failed: 1, rate: 2, elapsed: 2 * time.Second},
			"a: 4/10 (40%), 1 failed, 2.0/s, ETA 3.0s",
			"a: stopped at 4/10 after 2.0s, 4 processed in this run (2.0/s), 1 failed", false},
		{snapshot{desc: "b", total: -1, done: 7, now: 7, rate: 0.5, elapsed: 14 * time.Second},
			"b: 7 done, 0 failed, 30.0/min",
			"b: finished 7 in 14s, 7 processed in this run (30.0/min), 0 failed", true},
		{snapshot{desc: "c", total: 100000, done: 10, now: 10, rate: 1500, elapsed: 2 * time.Hour},
			"c: 10/100000 (0%), 0 failed, 1500/s, ETA 1m07s",
			"c: finished 10/100000 in 2h00m, 10 processed in this run (1500/s), 0 failed", true},
		{snapshot{desc: "d", total: 5, done: 0},
			"d: 0/5 (0%), 0 failed, 0/s, ETA ?",
			"d: stopped at 0/5 after 0.0s, 0 processed in this run (0/s), 0 failed", false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.run, tc.s.running(true))
		assert.Equal(t, tc.fin, tc.s.final(tc.done))
	}
}

func TestRateFollowsTheLastSeconds(t *testing.T) {
	var m rateMeter
	_, ok := m.rate()
	assert.False(t, ok, "no samples yet")
	// 100/s for 20 s, 10/s for 10 s, then nothing for 12 s.
	n := int64(0)
	for i := range 210 {
		at := time.Duration(i) * 200 * time.Millisecond
		switch {
		case at < 20*time.Second:
			n += 20
		case at < 30*time.Second:
			n += 2
		}
		m.sample(at, n)
		if i == 149 {
			rate, ok := m.rate()
			assert.True(t, ok)
			assert.InDelta(t, 10, rate, 0.5, "the rate is the recent one")
		}
	}
	rate, ok := m.rate()
	assert.True(t, ok)
	assert.Zero(t, rate, "a stalled job shows a rate of 0")
}

func TestStalledJobShowsNoRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := batchOpen(t, t.TempDir())
		rec := batchRecord(b)
		for _, item := range b.IterateWithProgress(slices.Collect(procInts(100)), procKey, "stall") {
			if item < 50 {
				time.Sleep(20 * time.Millisecond)
			} else if item == 50 {
				time.Sleep(15 * time.Second) // stuck
			}
			require.NoError(t, b.SaveResult(item, item))
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		require.NotEmpty(t, rec.updates)
		// The last update that still counts 50 is the one drawn during the
		// stall (an update after the stall, once the loop goes on, may or
		// may not come before the end, depending on scheduling).
		stalled := -1
		for i, u := range rec.updates {
			if u.done == 50 {
				stalled = i
			}
		}
		require.GreaterOrEqual(t, stalled, 0, "no update was drawn during the stall")
		last := rec.updates[stalled]
		assert.Zero(t, last.rate)
		assert.Contains(t, last.running(true), "0/s, ETA ?")
	})
}

// BenchmarkProgressOverhead compares a plain Runner loop with the same loop
// under IterateWithProgress, on trivial items: the difference is what the bar
// costs per item. The two run in alternating rounds on fresh checkpoints, so
// that a busy machine slows both alike; overhead-% compares their totals,
// median-overhead-% the rounds. The README's figure comes from
// -benchtime=1000000x.
func BenchmarkProgressOverhead(b *testing.B) {
	const round = 50_000
	var plain, batch time.Duration
	var ratios []float64
	for start, r := 0, 0; start < b.N; start, r = start+round, r+1 {
		items := slices.Collect(procInts(min(round, b.N-start)))
		runPlain := func() time.Duration {
			c := procOpen(b, b.TempDir())
			t0 := time.Now()
			for item := range c.Iterate(items, procKey) {
				if err := c.SaveResult(item, item); err != nil {
					b.Fatal(err)
				}
			}
			d := time.Since(t0)
			c.Close()
			return d
		}
		runBatch := func() time.Duration {
			c := batchOpen(b, b.TempDir(), WithProgressWriter(io.Discard))
			t0 := time.Now()
			for _, item := range c.IterateWithProgress(items, procKey, "bench") {
				if err := c.SaveResult(item, item); err != nil {
					b.Fatal(err)
				}
			}
			d := time.Since(t0)
			c.Close()
			return d
		}
		var p, q time.Duration
		if r%2 == 0 {
			p, q = runPlain(), runBatch()
		} else {
			q, p = runBatch(), runPlain()
		}
		plain += p
		batch += q
		ratios = append(ratios, float64(q)/float64(p))
	}
	slices.Sort(ratios)
	n := float64(b.N)
	b.ReportMetric(float64(batch.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(plain.Nanoseconds())/n, "runner-ns/item")
	b.ReportMetric((float64(batch)/float64(plain)-1)*100, "overhead-%")
	b.ReportMetric((ratios[len(ratios)/2]-1)*100, "median-overhead-%")
}
