package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Summary is what one Process call did. Failures of items are counted here,
// not returned as errors.
type Summary struct {
	Processed   int // items that got an outcome in this call: Succeeded + Failed
	Succeeded   int // items whose result was saved
	Failed      int // items whose failure was saved (or, rarely, whose key cannot be saved: see Process)
	Skipped     int // items not run: completed earlier, out of attempts, or with the same key as an item in flight
	Interrupted int // items stopped by the end of ctx (or a checkpoint failure); nothing is recorded for them, so the next run does them
	Retries     int // extra attempts after retryable errors
	Elapsed     time.Duration
}

// A ProcessOption configures Process.
type ProcessOption func(*processConfig)

type processConfig struct {
	workers    int
	retries    int
	backoffMin time.Duration
	backoffMax time.Duration
	timeout    time.Duration
	total      int    // for the progress bar; -1 when unknown
	desc       string // for the progress bar
	claimed    bool   // items come from remoteProcess, already claimed
}

func newProcessConfig(opts []ProcessOption) (processConfig, error) {
	c := processConfig{
		workers:    1,
		backoffMin: 100 * time.Millisecond,
		backoffMax: 10 * time.Second,
		total:      -1,
	}
	for _, opt := range opts {
		opt(&c)
	}
	switch {
	case c.workers < 1:
		return c, fmt.Errorf("checkpoint: %d workers, want 1 or more", c.workers)
	case c.retries < 0:
		return c, fmt.Errorf("checkpoint: %d retries, want 0 or more", c.retries)
	case c.backoffMin <= 0 || c.backoffMax < c.backoffMin:
		return c, fmt.Errorf("checkpoint: backoff from %v to %v, want 0 < initial <= max", c.backoffMin, c.backoffMax)
	case c.timeout < 0:
		return c, fmt.Errorf("checkpoint: item timeout %v, want 0 (none) or more", c.timeout)
	case c.total < -1:
		return c, fmt.Errorf("checkpoint: total %d, want 0 or more", c.total)
	}
	return c, nil
}

// WithWorkers sets how many items Process runs at once. The default is 1.
func WithWorkers(n int) ProcessOption {
	return func(c *processConfig) { c.workers = n }
}

// WithRetries lets Process try an item up to n more times within the run
// when fn fails with an error marked by Retryable, or runs out of the time
// set by WithItemTimeout. Other errors, and panics, are recorded at once. The
// default is 0: no retries within a run (a failed item is still tried again
// on the next run).
func WithRetries(n int) ProcessOption {
	return func(c *processConfig) { c.retries = n }
}

// WithBackoff sets the wait before a retry: initial before the first one,
// doubling for each next one up to max, each wait picked at random in its
// upper half so that workers failing together do not retry together. The
// default is 100ms up to 10s.
func WithBackoff(initial, max time.Duration) ProcessOption {
	return func(c *processConfig) { c.backoffMin, c.backoffMax = initial, max }
}

// WithItemTimeout bounds each attempt of fn: its ctx is cancelled after d.
// An attempt that fails after its time is up counts as retryable. fn must
// return when its ctx is done; Process cannot stop a call that ignores it.
// The default, 0, sets no bound.
func WithItemTimeout(d time.Duration) ProcessOption {
	return func(c *processConfig) { c.timeout = d }
}

// WithTotal tells BatchRunner.Process's progress bar how many items the
// input holds, so that it can show a percentage and an ETA. Runner.Process
// ignores it.
func WithTotal(n int) ProcessOption {
	return func(c *processConfig) { c.total = n }
}

// WithDescription sets the title of BatchRunner.Process's progress bar.
// Runner.Process ignores it.
func WithDescription(desc string) ProcessOption {
	return func(c *processConfig) { c.desc = desc }
}

// Retryable marks err as transient, for WithRetries: a rate limit, a
// timeout, a dropped connection. The error recorded, if every attempt fails,
// is the last one, with the same text as err. Retryable(nil) is nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string { return fmt.Sprintf("timed out after %v: %v", e.after, e.err) }
func (e *timeoutError) Unwrap() error { return e.err }

// panicError is a panic in fn. It has no Unwrap: a panic is a bug, never
// retried, whatever value it carries.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v\n\n%s", e.value, e.stack) }

func isRetryable(err error) bool {
	var r *retryableError
	var t *timeoutError
	return errors.As(err, &r) || errors.As(err, &t)
}

// Process runs fn on every item whose key is not completed, on up to
// WithWorkers items at once, and records each outcome: a value with
// SaveResult, an error with SaveError. It skips keys as Iterate does, and an
// item whose key is already being worked on.
//
// It reads items as the workers take them, so the input is never held in
// memory; Progress's total counts the items read so far, as with IterateSeq.
//
// A panic in fn is recorded as the failure of that item, with the panic value
// and the stack, and the other items go on. Errors marked with Retryable are
// retried within the run (WithRetries, WithBackoff). A result that cannot be
// encoded as JSON is recorded as a failure. An item whose key cannot be
// recorded at all (invalid UTF-8, NaN) is logged, counted as failed, and not
// run. The failures are in Summary and AllErrors, not in the returned error.
//
// When ctx is done, no new item starts, the calls under way see their ctx
// cancelled, and results that still arrive are recorded; an item whose call
// fails or is waiting to retry at that point is not recorded, so the next run
// does it again. Process returns ctx's error once every worker has exited,
// unless every item had already been done.
//
// Process returns an error, after stopping the same way, only if the
// checkpoint itself fails (a write, or the runner was closed), or ctx ends.
// Panics in items or keyFn are not caught: they reach the caller once the
// workers have stopped. No goroutine started by Process outlives it.
func (r *Runner[K, T]) Process(ctx context.Context, items iter.Seq[T], keyFn func(T) K,
	fn func(ctx context.Context, item T) (any, error), opts ...ProcessOption) (Summary, error) {
	cfg, err := newProcessConfig(opts)
	if err != nil {
		return Summary{}, err
	}
	return r.process(ctx, r, items, keyFn, fn, cfg, nil)
}

// outcomeSaver records outcomes: the Runner, or a BatchRunner that also moves its bar.
type outcomeSaver[K comparable] interface {
	SaveResult(key K, result any) error
	SaveError(key K, err error) error
}

type processJob[K comparable, T any] struct {
	key  K
	item T
}

// processRun is the state of one Process call.
type processRun[K comparable, T any] struct {
	r      *Runner[K, T]
	save   outcomeSaver[K]
	fn     func(ctx context.Context, item T) (any, error)
	cfg    processConfig
	bar    *progress // nil without a bar
	ctx    context.Context
	cancel context.CancelFunc

	succeeded, failed, interrupted, retries atomic.Int64

	inflightMu sync.Mutex
	inflight   map[K]struct{}

	errOnce sync.Once
	err     error // the first checkpoint failure
}

func (r *Runner[K, T]) process(ctx context.Context, save outcomeSaver[K], items iter.Seq[T], keyFn func(T) K,
	fn func(ctx context.Context, item T) (any, error), cfg processConfig, bar *progress) (Summary, error) {
	start := time.Now()
	if r.runnerClosed() {
		return Summary{}, ErrClosed
	}
	if r.backend != nil && !cfg.claimed {
		return r.remoteProcess(ctx, save, items, keyFn, fn, cfg, bar)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &processRun[K, T]{
		r: r, save: save, fn: fn, cfg: cfg, bar: bar,
		ctx: runCtx, cancel: cancel,
		inflight: make(map[K]struct{}, cfg.workers),
	}

	// Unbuffered: an item is read from the input only when a worker is free.
	jobs := make(chan processJob[K, T])
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Go(func() {
			fl := r.processSlot() // in-flight tracking; nil when off
			defer fl.release()
			for j := range jobs {
				r.begin(fl, j.key)
				p.do(j)
				fl.end()
			}
		})
	}
	var skipped int
	var exhausted bool
	func() {
		fed := false
		defer func() {
			if !fed {
				cancel() // items or keyFn panicked: stop the workers too
			}
			close(jobs)
			wg.Wait()
		}()
		skipped, exhausted = p.feed(items, keyFn, jobs)
		fed = true
	}()

	sum := Summary{
		Succeeded:   int(p.succeeded.Load()),
		Failed:      int(p.failed.Load()),
		Skipped:     skipped,
		Interrupted: int(p.interrupted.Load()),
		Retries:     int(p.retries.Load()),
		Elapsed:     time.Since(start),
	}
	sum.Processed = sum.Succeeded + sum.Failed
	if p.err != nil {
		return sum, p.err
	}
	if err := ctx.Err(); err != nil && (!exhausted || sum.Interrupted > 0) {
		return sum, err
	}
	return sum, nil
}

// feed hands the items still to do to the workers. exhausted is true if it
// read the whole input.
func (p *processRun[K, T]) feed(items iter.Seq[T], keyFn func(T) K, jobs chan<- processJob[K, T]) (skipped int, exhausted bool) {
	p.r.total.Store(0)
	var c cursor
	for item := range items {
		if p.ctx.Err() != nil {
			return skipped, false
		}
		p.r.total.Add(1)
		k := keyFn(item)
		// Claim the key before looking it up: a worker lets go of it only
		// after saving, so an item with the same key is then seen as done.
		if !p.claim(k) {
			skipped++
			p.bar.skip()
			continue
		}
		if !p.r.pending(k, &c) {
			p.release(k)
			if p.r.runnerClosed() {
				p.fail(ErrClosed)
				return skipped, false
			}
			skipped++
			p.bar.skip()
			continue
		}
		p.bar.handOut()
		select {
		case jobs <- processJob[K, T]{k, item}:
		case <-p.ctx.Done():
			p.release(k)
			p.bar.takeBack()
			return skipped, false
		}
	}
	return skipped, true
}

func (p *processRun[K, T]) claim(k K) bool {
	p.inflightMu.Lock()
	defer p.inflightMu.Unlock()
	if _, busy := p.inflight[k]; busy {
		return false
	}
	p.inflight[k] = struct{}{}
	return true
}

func (p *processRun[K, T]) release(k K) {
	p.inflightMu.Lock()
	delete(p.inflight, k)
	p.inflightMu.Unlock()
}

// fail records a checkpoint failure and stops the run.
func (p *processRun[K, T]) fail(err error) {
	p.errOnce.Do(func() { p.err = err })
	p.cancel()
}

// do runs one item to its outcome, retrying as configured.
func (p *processRun[K, T]) do(j processJob[K, T]) {
	defer p.release(j.key)
	if err := p.r.checkKey(j.key); err != nil {
		p.r.log.Warn("checkpoint: an item's key cannot be recorded; it was not run",
			"name", p.r.name, "key", fmt.Sprint(j.key), "err", err)
		p.failed.Add(1)
		p.bar.outcome(false, true)
		return
	}
	for attempt := 1; ; attempt++ {
		if p.ctx.Err() != nil {
			p.interrupted.Add(1)
			return
		}
		v, err := p.call(j.item)
		var pe *panicError
		switch {
		case err == nil:
			p.saveResult(j.key, v)
			return
		case p.ctx.Err() != nil && !errors.As(err, &pe):
			// Most likely the cancellation itself: not the item's fault.
			p.interrupted.Add(1)
			return
		case attempt <= p.cfg.retries && isRetryable(err):
			p.retries.Add(1)
			if !waitBackoff(p.ctx, p.cfg.backoff(attempt)) {
				p.interrupted.Add(1)
				return
			}
		default:
			if attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			p.saveError(j.key, err)
			return
		}
	}
}

// call runs fn once, turning a panic into a *panicError and a timeout into a
// *timeoutError.
func (p *processRun[K, T]) call(item T) (v any, err error) {
	ctx := p.ctx
	if p.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.timeout)
		defer cancel()
	}
	defer func() {
		if rec := recover(); rec != nil {
			v, err = nil, &panicError{value: rec, stack: debug.Stack()}
		}
	}()
	v, err = p.fn(ctx, item)
	if err != nil && p.ctx.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = &timeoutError{after: p.cfg.timeout, err: err}
	}
	return v, err
}

func (p *processRun[K, T]) saveResult(k K, v any) {
	err := p.save.SaveResult(k, v)
	switch {
	case err == nil:
		p.succeeded.Add(1)
	case isEncodeError(err):
		p.saveError(k, err)
	default:
		p.fail(err)
	}
}

func (p *processRun[K, T]) saveError(k K, err error) {
	if err := p.save.SaveError(k, err); err != nil {
		p.fail(err)
		return
	}
	p.failed.Add(1)
}

// isEncodeError tells a result that JSON cannot encode, which is the item's
// failure, from a failure of the checkpoint.
func isEncodeError(err error) bool {
	var te *json.UnsupportedTypeError
	var ve *json.UnsupportedValueError
	var me *json.MarshalerError
	return errors.As(err, &te) || errors.As(err, &ve) || errors.As(err, &me)
}

// checkKey reports whether k can be written to the checkpoint.
func (r *Runner[K, T]) checkKey(k K) error {
	bp := r.getBuf()
	defer r.bufs.Put(bp)
	_, err := r.keys.encode((*bp)[:0], k)
	return err
}

// backoff is the wait before retry number n (1 for the first), with equal
// jitter: a random point in the upper half of the exponential step.
func (c processConfig) backoff(n int) time.Duration {
	d := c.backoffMin
	for i := 1; i < n && d < c.backoffMax; i++ {
		if d > c.backoffMax/2 {
			d = c.backoffMax // doubling could overflow
		} else {
			d *= 2
		}
	}
	return d/2 + rand.N(d-d/2+1)
}

// waitBackoff waits for d, or until ctx is done; it reports whether it waited.
func waitBackoff(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
