package checkpoint

import (
	"context"
	"io"
	"iter"
	"os"
	"sync/atomic"
	"time"
)

// A BatchRunner is a Runner that shows progress: IterateWithProgress and
// Process draw a progress bar over the whole input, advanced as outcomes are
// saved. Every Runner method works as on a Runner.
//
// In a terminal the bar is redrawn in place about five times a second. When
// the writer is not a terminal (a file, a pipe, a CI log) it prints a plain
// line instead, at most once per WithProgressInterval, and a summary line at
// the end.
//
// A BatchRunner is made by OpenBatch and, like a Runner, is safe for
// concurrent use. One progress display runs at a time: a loop started while
// another one is showing progress runs without a bar.
type BatchRunner[K comparable, T any] struct {
	*Runner[K, T]
	out    io.Writer
	every  time.Duration
	active atomic.Pointer[progress]
	// newDisplay is newDisplay; tests swap in a terminal bar on a buffer.
	newDisplay func(w io.Writer, every time.Duration, total int64) display
}

// batchOptions are the Options only OpenBatch reads.
type batchOptions struct {
	out   io.Writer
	every time.Duration
}

// defaultProgressInterval keeps a log readable: a ten-hour job writes a few
// thousand lines.
const defaultProgressInterval = 5 * time.Second

// WithProgressWriter sets where a BatchRunner draws its progress. The default
// (and what nil means) is os.Stderr; io.Discard turns progress off. Open
// ignores it.
func WithProgressWriter(w io.Writer) Option {
	return func(o *options) { o.batch.out = w }
}

// WithProgressInterval sets how often a BatchRunner whose writer is not a
// terminal prints a progress line; the default is 5 seconds. A terminal is
// redrawn about five times a second whatever the interval. Open ignores it.
func WithProgressInterval(d time.Duration) Option {
	return func(o *options) { o.batch.every = d }
}

// OpenBatch opens the checkpoint called name like Open, for use with a
// progress bar.
func OpenBatch[K comparable, T any](name string, opts ...Option) (*BatchRunner[K, T], error) {
	r, err := Open[K, T](name, opts...)
	if err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	b := &BatchRunner[K, T]{Runner: r, out: o.batch.out, every: o.batch.every, newDisplay: newDisplay}
	if b.out == nil {
		b.out = os.Stderr
	}
	if b.every <= 0 {
		b.every = defaultProgressInterval
	}
	return b, nil
}

// IterateWithProgress is Iterate with a progress bar titled desc (the
// checkpoint's name if desc is empty). It yields the index in items of each
// item still to do, and the item.
//
// The bar counts the whole input: on a resumed run it starts at the number of
// items already done. It advances when SaveResult or SaveError is called for
// a yielded item, not when the item is yielded, so it shows work that is
// recorded. Saving twice for one item (a failure, then a result on retry)
// counts it once. It shows the failures of this run, the rate over the last
// seconds and the time left.
//
// Breaking out of the loop, or a panic in its body, ends the bar with a
// final line that says where it stopped.
func (b *BatchRunner[K, T]) IterateWithProgress(items []T, keyFn func(T) K, desc string) iter.Seq2[int, T] {
	return func(yield func(int, T) bool) {
		r := b.Runner
		if r.runnerClosed() {
			r.setErr(ErrClosed)
			return
		}
		title := desc
		if title == "" {
			title = r.name
		}
		var done int64
		if r.hasRecords() { // a fresh checkpoint needs no count
			var c cursor
			for _, item := range items {
				if !r.pending(keyFn(item), &c) {
					done++
				}
			}
		}
		r.total.Store(int64(len(items)))
		p := b.begin(title, int64(len(items)), done)
		complete := false
		defer func() { b.end(p, complete) }()
		if r.backend != nil {
			complete = r.remoteIterateIndexed(items, keyFn, p, yield)
			return
		}
		var c cursor
		fl := r.iterateSlot() // in-flight tracking: nil unless WithInFlightIterate
		defer fl.release()
		for i, item := range items {
			k := keyFn(item)
			pending, then := r.pendingState(k, &c)
			if !pending {
				// Counted above, unless its key was first saved in this run
				// for an earlier item with the same key.
				if p != nil {
					if _, touched := r.keyChangedSince(k, p.mark); touched {
						p.skip()
					}
				}
				continue
			}
			p.handOut()
			if fl != nil {
				r.beginAt(fl, k, then)
			}
			ok := yield(i, item)
			fl.end()
			if !ok {
				return
			}
		}
		complete = !r.runnerClosed()
	}
}

// SaveResult is Runner.SaveResult; it also advances the progress bar.
func (b *BatchRunner[K, T]) SaveResult(key K, result any) error {
	p := b.active.Load()
	if p == nil {
		return b.Runner.SaveResult(key, result)
	}
	failedBefore := false
	if p.errorsSaved.Load() > 0 { // else no key can have failed in this run
		failedBefore, _ = b.keyChangedSince(key, p.mark)
	}
	if err := b.Runner.SaveResult(key, result); err != nil {
		return err
	}
	p.outcome(failedBefore, false)
	return nil
}

// SaveError is Runner.SaveError; it also advances the progress bar and its
// count of failures.
func (b *BatchRunner[K, T]) SaveError(key K, err error) error {
	p := b.active.Load()
	if p == nil {
		return b.Runner.SaveError(key, err)
	}
	failedBefore, _ := b.keyChangedSince(key, p.mark)
	p.errorsSaved.Add(1)
	if err := b.Runner.SaveError(key, err); err != nil {
		return err
	}
	p.outcome(failedBefore, true)
	return nil
}

// Process is Runner.Process with a progress bar. Its title is set by
// WithDescription (the checkpoint's name by default). As the input is a
// stream, the bar knows its total only from WithTotal; without it, it shows
// the counts and the rate but no ETA. Items already done are counted as
// Process reads past them.
func (b *BatchRunner[K, T]) Process(ctx context.Context, items iter.Seq[T], keyFn func(T) K,
	fn func(ctx context.Context, item T) (any, error), opts ...ProcessOption) (Summary, error) {
	cfg, err := newProcessConfig(opts)
	if err != nil {
		return Summary{}, err
	}
	if b.runnerClosed() {
		return Summary{}, ErrClosed
	}
	desc := cfg.desc
	if desc == "" {
		desc = b.name
	}
	p := b.begin(desc, int64(cfg.total), 0)
	complete := false
	defer func() { b.end(p, complete) }()
	// Without a bar of its own (another loop shows one), its saves must not
	// move that loop's bar.
	var save outcomeSaver[K] = b
	if p == nil {
		save = b.Runner
	}
	sum, err := b.Runner.process(ctx, save, items, keyFn, fn, cfg, p)
	complete = err == nil
	return sum, err
}

// begin starts a progress display, or returns nil if one is already showing.
func (b *BatchRunner[K, T]) begin(desc string, total, done int64) *progress {
	p := newProgress(desc, total, done, b.journalMark(), nil)
	if !b.active.CompareAndSwap(nil, p) {
		return nil
	}
	p.out = b.newDisplay(b.out, b.every, total)
	p.begin(b.every)
	return p
}

func (b *BatchRunner[K, T]) end(p *progress, complete bool) {
	if p == nil {
		return
	}
	b.active.CompareAndSwap(p, nil)
	p.end(complete)
}

// journalMark is where the journals ended at some moment. A key whose latest
// line lies past it was saved after that moment.
type journalMark struct{ results, errors int64 }

func (r *Runner[K, T]) journalMark() journalMark {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return journalMark{results: r.results.size, errors: r.errors.size}
}

// keyChangedSince reports whether k's latest outcome was saved after m
// (touched), and whether that outcome is a failure (failed).
func (r *Runner[K, T]) keyChangedSince(k K, m journalMark) (failed, touched bool) {
	r.mu.RLock()
	s, seen := r.index.get(k)
	r.mu.RUnlock()
	switch {
	case !seen:
		return false, false
	case s.done():
		return false, s.offset() >= m.results
	}
	after := s.offset() >= m.errors
	return after, after
}

func (r *Runner[K, T]) runnerClosed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.closed
}

func (r *Runner[K, T]) hasRecords() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.completed+r.failed > 0
}
