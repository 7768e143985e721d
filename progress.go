package checkpoint

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is the state behind one progress display: one loop of
// IterateWithProgress or one BatchRunner.Process call.
//
// It is fed with counters only: saving an outcome costs a few atomic
// operations, and one goroutine redraws the display on a clock. So the cost
// per item does not depend on how often the display is drawn, and a stalled
// job is seen as stalled (its rate falls, its ETA grows).
type progress struct {
	desc  string
	total int64       // items in the whole input; -1 when unknown
	mark  journalMark // the journals' ends when it began: what "this run" means

	before atomic.Int64 // items that needed no work: done (or given up) before
	now    atomic.Int64 // items given an outcome in this run
	failed atomic.Int64 // keys that failed in this run and have not succeeded since
	owed   atomic.Int64 // items handed out that have not had an outcome yet
	// errorsSaved counts SaveError calls: until the first one, SaveResult
	// need not look up whether its key failed in this run.
	errorsSaved atomic.Int64

	start time.Time
	out   display
	stop  chan struct{}
	ended chan struct{}
	// Owned by the redraw goroutine until it has ended:
	rate    rateMeter
	started bool // the display has drawn its first frame
}

// tick is how often the display is refreshed: in a terminal about five
// redraws a second, which reads as smooth without flicker.
const tick = 200 * time.Millisecond

func newProgress(desc string, total, before int64, mark journalMark, out display) *progress {
	p := &progress{
		desc:  desc,
		total: total,
		mark:  mark,
		start: time.Now(),
		out:   out,
		stop:  make(chan struct{}),
		ended: make(chan struct{}),
	}
	p.before.Store(before)
	return p
}

// begin starts the redraw goroutine; end stops it. The first frame is drawn
// at the first tick, not at once: by then Process has read past the items
// done before, so a resumed run starts at its true count, and a loop that
// ends sooner than that prints only its summary.
func (p *progress) begin(every time.Duration) {
	go p.redraw(min(tick, every))
}

func (p *progress) redraw(every time.Duration) {
	defer close(p.ended)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.rate.sample(now.Sub(p.start), p.now.Load())
			if !p.started {
				p.started = true
				p.out.start(p.snapshot(now))
			} else {
				p.out.update(p.snapshot(now))
			}
		}
	}
}

// end stops the redraws and draws the final state. complete tells a loop
// that ran out of items from one that was stopped (break, panic, Ctrl-C).
func (p *progress) end(complete bool) {
	close(p.stop)
	<-p.ended
	s := p.snapshot(time.Now())
	s.rate = s.average()
	p.out.finish(s, complete)
}

// handOut notes an item given to the caller or a worker: the next outcome
// saved accounts for it.
func (p *progress) handOut() {
	if p != nil {
		p.owed.Add(1)
	}
}

// takeBack undoes handOut for an item that was not given out after all.
func (p *progress) takeBack() {
	if p != nil {
		p.owed.Add(-1)
	}
}

// skip accounts for an item that needs no work.
func (p *progress) skip() {
	if p != nil {
		p.before.Add(1)
	}
}

// outcome records that an outcome was saved. It advances the count only for
// an item that was handed out, so saving twice for one item (a failure, then
// a result after a retry) counts the item once. failedBefore tells whether
// the key's latest outcome was a failure from this run.
func (p *progress) outcome(failedBefore, isErr bool) {
	if p == nil {
		return
	}
	for {
		n := p.owed.Load()
		if n <= 0 {
			break
		}
		if p.owed.CompareAndSwap(n, n-1) {
			p.now.Add(1)
			break
		}
	}
	switch {
	case isErr && !failedBefore:
		p.failed.Add(1)
	case !isErr && failedBefore:
		p.failed.Add(-1)
	}
}

func (p *progress) snapshot(at time.Time) snapshot {
	before, now := p.before.Load(), p.now.Load()
	s := snapshot{
		desc:    p.desc,
		total:   p.total,
		done:    before + now,
		before:  before,
		now:     now,
		failed:  p.failed.Load(),
		elapsed: at.Sub(p.start),
		at:      at,
	}
	var ok bool
	if s.rate, ok = p.rate.rate(); !ok {
		s.rate = s.average()
	}
	return s
}

// rateMeter gives the rate over the last few seconds, so that the ETA follows
// a job that slows down or speeds up instead of its lifetime average.
type rateMeter struct {
	t    [64]time.Duration
	n    [64]int64
	next int
	full bool
}

const rateWindow = 10 * time.Second

func (m *rateMeter) sample(t time.Duration, n int64) {
	m.t[m.next], m.n[m.next] = t, n
	m.next = (m.next + 1) % len(m.t)
	if m.next == 0 {
		m.full = true
	}
}

// rate is the number of outcomes per second over about the last ten
// seconds; ok is false when there is less than a second of samples.
func (m *rateMeter) rate() (rate float64, ok bool) {
	count := m.next
	if m.full {
		count = len(m.t)
	}
	if count < 2 {
		return 0, false
	}
	last := (m.next - 1 + len(m.t)) % len(m.t)
	first := (m.next - count + len(m.t)) % len(m.t)
	for i := first; i != last; i = (i + 1) % len(m.t) {
		if m.t[last]-m.t[i] <= rateWindow {
			first = i
			break
		}
	}
	span := m.t[last] - m.t[first]
	if span < time.Second {
		return 0, false
	}
	return float64(m.n[last]-m.n[first]) / span.Seconds(), true
}

// A snapshot is what a display shows at one moment.
type snapshot struct {
	desc    string
	total   int64 // -1 when unknown
	done    int64 // before + now
	before  int64 // items that needed no work
	now     int64 // items given an outcome in this run
	failed  int64
	rate    float64 // outcomes per second
	elapsed time.Duration
	at      time.Time
}

func (s snapshot) average() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.now) / s.elapsed.Seconds()
}

// running is the text while the job runs; withPercent for plain lines, as a
// terminal shows the percentage in its bar.
func (s snapshot) running(withPercent bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", s.desc)
	if s.total >= 0 {
		fmt.Fprintf(&b, "%d/%d", s.done, s.total)
		if withPercent {
			fmt.Fprintf(&b, " (%d%%)", percent(s.done, s.total))
		}
	} else {
		fmt.Fprintf(&b, "%d done", s.done)
	}
	fmt.Fprintf(&b, ", %d failed, %s", s.failed, formatRate(s.rate))
	if s.total >= 0 {
		left := s.total - s.done
		switch {
		case left <= 0:
		case s.rate > 0:
			fmt.Fprintf(&b, ", ETA %s", formatDuration(time.Duration(float64(left)/s.rate*float64(time.Second))))
		default:
			b.WriteString(", ETA ?")
		}
	}
	return b.String()
}

// begun is the first plain line: it tells a resumed run from a fresh one.
func (s snapshot) begun() string {
	switch {
	case s.total < 0 && s.before == 0:
		return fmt.Sprintf("%s: started", s.desc)
	case s.total < 0:
		return fmt.Sprintf("%s: resumed, %d done before", s.desc, s.before)
	case s.before == 0:
		return fmt.Sprintf("%s: started, %d items", s.desc, s.total)
	default:
		return fmt.Sprintf("%s: resumed at %d/%d (%d%% done before)", s.desc, s.before, s.total, percent(s.before, s.total))
	}
}

// count is "done/total", or "done" when the total is unknown.
func (s snapshot) count() string {
	if s.total >= 0 {
		return fmt.Sprintf("%d/%d", s.done, s.total)
	}
	return fmt.Sprint(s.done)
}

// final is the summary line. Its rate is the average over the whole run.
func (s snapshot) final(complete bool) string {
	if complete && s.now == 0 && s.failed == 0 {
		if s.total >= 0 {
			return fmt.Sprintf("%s: nothing to do, %d/%d already done", s.desc, s.done, s.total)
		}
		return fmt.Sprintf("%s: nothing to do, %d already done", s.desc, s.done)
	}
	verb, prep := "finished", "in"
	if !complete {
		verb, prep = "stopped at", "after"
	}
	return fmt.Sprintf("%s: %s %s %s %s, %d processed in this run (%s), %d failed",
		s.desc, verb, s.count(), prep, formatDuration(s.elapsed), s.now, formatRate(s.rate), s.failed)
}

// short is the final text beside a terminal bar, which has less room.
func (s snapshot) short(complete bool) string {
	if complete && s.now == 0 && s.failed == 0 {
		return s.final(true)
	}
	verb, prep := "done", "in"
	if !complete {
		verb, prep = "stopped at", "after"
	}
	return fmt.Sprintf("%s: %s %s %s %s (%s), %d failed",
		s.desc, verb, s.count(), prep, formatDuration(s.elapsed), formatRate(s.rate), s.failed)
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 100
	}
	return min(100, done*100/total)
}

func formatRate(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f/s", r)
	case r >= 1:
		return fmt.Sprintf("%.1f/s", r)
	case r > 0:
		return fmt.Sprintf("%.1f/min", r*60)
	}
	return "0/s"
}

func formatDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// A display draws snapshots. Its methods are called from one goroutine at a
// time: start, then update from the redraw goroutine, then finish.
type display interface {
	start(s snapshot)
	update(s snapshot)
	finish(s snapshot, complete bool)
}

// newDisplay picks the display for w: a bar redrawn in place in a terminal,
// plain lines anywhere else (files, pipes, CI logs), where carriage returns
// would pile up into one endless line.
func newDisplay(w io.Writer, every time.Duration, total int64) display {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		fd := int(f.Fd())
		return newBarDisplay(f, total, func() int {
			cols, _, err := term.GetSize(fd)
			if err != nil || cols <= 0 {
				return 80
			}
			return cols
		})
	}
	return &lineDisplay{w: w, every: every}
}

// lineDisplay writes a line at start, at most one per interval while the job
// runs, and a summary at the end. Each line is one Write, so lines from
// other writers to the same file do not cut into it.
type lineDisplay struct {
	w     io.Writer
	every time.Duration
	last  time.Time
}

func (d *lineDisplay) start(s snapshot) {
	d.last = s.at
	d.write(s.begun())
}

func (d *lineDisplay) update(s snapshot) {
	if s.at.Sub(d.last) < d.every {
		return
	}
	d.last = s.at
	d.write(s.running(true))
}

func (d *lineDisplay) finish(s snapshot, complete bool) {
	d.write(s.final(complete))
}

// write ignores errors: progress is for people, and a full log disk must not
// stop the job.
func (d *lineDisplay) write(line string) {
	_, _ = io.WriteString(d.w, line+"\n")
}

// barDisplay draws a progressbar redrawn in place, with the counts, the
// failures, the rate and the ETA written after it. It computes those itself:
// progressbar's own rate would count the items done before a resume as if
// they had been done in the first second.
type barDisplay struct {
	bar      *progressbar.ProgressBar
	w        io.Writer
	total    int64
	barWidth int
	cols     func() int
}

// plainWriter hides an *os.File from progressbar, which calls Sync after
// every write to one: on a terminal that is a wasted system call per redraw,
// on a file it would cost a disk flush.
type plainWriter struct{ w io.Writer }

func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

// textRoom is what the text after the bar is expected to need.
const textRoom = 56

func newBarDisplay(w io.Writer, total int64, cols func() int) *barDisplay {
	d := &barDisplay{w: plainWriter{w}, total: total, cols: cols}
	if total == 0 {
		return d // progressbar refuses a max of 0; there is nothing to draw
	}
	d.barWidth = min(40, max(10, cols()-barFrame-textRoom))
	limit := total
	if total < 0 {
		limit = -1 // a spinner
	}
	d.bar = progressbar.NewOptions64(limit,
		progressbar.OptionSetWriter(d.w),
		progressbar.OptionSetWidth(d.barWidth),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		// ANSI mode overwrites the line instead of blanking it first: no flicker.
		progressbar.OptionUseANSICodes(true),
		// 0 stops the spinner's own goroutine, which would outlive the loop.
		progressbar.OptionSetSpinnerChangeInterval(0),
	)
	return d
}

// barFrame is the width of what progressbar puts around the bar and the
// text: "100% |", "| ", the space before the text and one spare column.
const barFrame = 12

func (d *barDisplay) start(s snapshot) { d.update(s) }

func (d *barDisplay) update(s snapshot) {
	if d.bar == nil {
		return
	}
	d.draw(s.running(false), s.done)
}

func (d *barDisplay) draw(text string, done int64) {
	d.bar.Describe(fit(text, d.cols()-d.barWidth-barFrame))
	if d.total > 0 {
		// Only finish reaches the max: at the max progressbar stops drawing.
		done = min(done, d.total-1)
	}
	_ = d.bar.Set64(done)
}

func (d *barDisplay) finish(s snapshot, complete bool) {
	if d.bar == nil {
		_, _ = io.WriteString(d.w, fit(s.final(complete), d.cols()-1)+"\n")
		return
	}
	text := s.short(complete)
	if complete && d.total > 0 && s.done >= d.total {
		d.bar.Describe(fit(text, d.cols()-d.barWidth-barFrame))
		_ = d.bar.Set64(d.total) // draws the full bar, once
	} else {
		d.draw(text, s.done)
	}
	_ = d.bar.Exit()
	// Leave the cursor on a fresh line for whatever is printed next.
	_, _ = io.WriteString(d.w, "\n")
}

// fit shortens s to n columns, so a line never wraps: a wrapped line cannot
// be redrawn in place.
func fit(s string, n int) string {
	n = max(n, 10)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
