package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A Cache remembers the values of an expensive function (an LLM request, a
// web call) on disk, by key, so that no call is paid for twice, in this run
// or a later one. It is made by Cached or CachedBy.
//
// Get returns the saved value of a key when there is one; otherwise it calls
// the function once and saves the value. Concurrent callers of one key share
// that one call. Errors are not saved, so the next Get calls again, unless
// WithCacheErrors is given.
//
// A Cache is a Runner underneath: its files are a checkpoint's (<name>_results.jsonl,
// with the key and the value as JSON, the same format and crash safety), so
// AllResults, Python's library and `checkpoint status` read them. Values are
// read from disk at a key's first Get in a run, then kept in memory.
//
// A Cache is safe for concurrent use. It holds its checkpoint's lock until
// Close. The zero value is not usable.
type Cache[A, V any] struct {
	get    func(ctx context.Context, arg A) (V, error)
	runner interface{ Close() error }
}

// Get returns the value for arg: saved, or computed by the function and
// then saved. If the value was computed but could not be saved, Get returns
// it with an error saying so.
//
// A call is shared by the concurrent callers of its key. If the caller
// whose goroutine runs it gives up (its ctx ends), the others do not get its
// ctx's error: one of them calls again. A caller whose ctx ends stops
// waiting at once, with ctx's error.
func (c *Cache[A, V]) Get(ctx context.Context, arg A) (V, error) {
	return c.get(ctx, arg)
}

// Close releases the cache's checkpoint. Get afterwards returns ErrClosed.
func (c *Cache[A, V]) Close() error {
	return c.runner.Close()
}

// WithCacheErrors makes a Cache save errors too: a key whose call failed
// returns the same error text, without calling again, until WithTTL expires
// it. Errors of a call whose ctx ended are never saved.
func WithCacheErrors() Option {
	return func(o *options) { o.ext.cacheErrors = true }
}

// WithTTL makes a Cache treat a value (or saved error) older than d as
// missing: the next Get calls again and saves the new value. The default, 0,
// keeps values forever.
func WithTTL(d time.Duration) Option {
	return func(o *options) { o.ext.ttl = d }
}

// Cached returns a Cache of fn by its argument, which is the key: the same
// kinds of keys as a Runner's. The options are those of Open (WithDir,
// WithSync...), with WithCacheErrors and WithTTL.
func Cached[K comparable, V any](name string, fn func(context.Context, K) (V, error), opts ...Option) (*Cache[K, V], error) {
	return newCache(name, func(k K) K { return k }, fn, opts)
}

// CachedBy returns a Cache of fn for arguments that are not keys (a request
// struct, several values): key gives the key of an argument, for example
// HashKey(arg). Two arguments with the same key share one value.
func CachedBy[A, V any](name string, key func(A) string, fn func(context.Context, A) (V, error), opts ...Option) (*Cache[A, V], error) {
	return newCache(name, key, fn, opts)
}

// HashKey returns a key for args: 32 hex digits of the SHA-256 of their
// JSON. Arguments that JSON cannot encode are hashed from their Go syntax
// (%#v) instead.
func HashKey(args ...any) string {
	b, err := json.Marshal(args)
	if err != nil {
		b = fmt.Appendf(nil, "%#v", args)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func newCache[K comparable, A, V any](name string, key func(A) K, fn func(context.Context, A) (V, error), opts []Option) (*Cache[A, V], error) {
	if fn == nil || key == nil {
		return nil, errors.New("checkpoint: cache with a nil function")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.ext.ttl < 0 {
		return nil, fmt.Errorf("checkpoint: cache TTL %v, want 0 (forever) or more", o.ext.ttl)
	}
	r, err := Open[K, A](name, opts...)
	if err != nil {
		return nil, err
	}
	c := &cacheCore[K, A, V]{r: r, key: key, fn: fn, ttl: o.ext.ttl, cacheErrors: o.ext.cacheErrors, calls: make(map[K]*cacheCall[V])}
	return &Cache[A, V]{get: c.get, runner: c}, nil
}

// cacheCore is a Cache for keys of type K.
type cacheCore[K comparable, A, V any] struct {
	r           *Runner[K, A]
	key         func(A) K
	fn          func(context.Context, A) (V, error)
	ttl         time.Duration
	cacheErrors bool
	closed      atomic.Bool

	mem sync.Map // K -> *cacheEntry[V]: values read or computed in this run

	mu    sync.Mutex
	calls map[K]*cacheCall[V] // calls under way
}

type cacheEntry[V any] struct {
	v   V
	err error // a saved error, with WithCacheErrors
	at  time.Time
}

type cacheCall[V any] struct {
	done chan struct{}
	v    V
	err  error
	// again: the call ended for a reason of its leader's (its ctx, a
	// panic), not the key's: a waiter calls again.
	again bool
}

func (c *cacheCore[K, A, V]) Close() error {
	c.closed.Store(true)
	return c.r.Close()
}

func (c *cacheCore[K, A, V]) get(ctx context.Context, arg A) (V, error) {
	if c.closed.Load() {
		var zero V
		return zero, ErrClosed
	}
	k := c.key(arg)
	if e, ok := c.hit(k); ok {
		return e.v, e.err
	}
	return c.miss(ctx, k, arg)
}

func (c *cacheCore[K, A, V]) hit(k K) (*cacheEntry[V], bool) {
	v, ok := c.mem.Load(k)
	if !ok {
		return nil, false
	}
	e := v.(*cacheEntry[V])
	if c.ttl > 0 && time.Since(e.at) >= c.ttl {
		return nil, false
	}
	return e, true
}

func (c *cacheCore[K, A, V]) miss(ctx context.Context, k K, arg A) (V, error) {
	var zero V
	for {
		c.mu.Lock()
		if e, ok := c.hit(k); ok {
			c.mu.Unlock()
			return e.v, e.err
		}
		if cl, ok := c.calls[k]; ok {
			c.mu.Unlock()
			select {
			case <-cl.done:
				if cl.again {
					continue
				}
				return cl.v, cl.err
			case <-ctx.Done():
				return zero, ctx.Err()
			}
		}
		cl := &cacheCall[V]{done: make(chan struct{})}
		c.calls[k] = cl
		c.mu.Unlock()
		c.lead(ctx, k, arg, cl)
		return cl.v, cl.err
	}
}

// lead looks k up on disk and, if it is missing, calls fn; the waiters of cl
// get the outcome. A panic in fn goes on up the leader's stack; the waiters
// call again.
func (c *cacheCore[K, A, V]) lead(ctx context.Context, k K, arg A, cl *cacheCall[V]) {
	finished := false
	defer func() {
		if !finished {
			cl.again = true
		}
		c.mu.Lock()
		delete(c.calls, k)
		c.mu.Unlock()
		close(cl.done)
	}()
	if e, ok, err := c.load(k); err != nil || ok {
		if err != nil {
			cl.err = err
		} else {
			c.mem.Store(k, e)
			cl.v, cl.err = e.v, e.err
		}
		finished = true
		return
	}
	v, err := c.fn(ctx, arg)
	finished = true
	if err != nil {
		cl.err = err
		if ctx.Err() != nil {
			cl.again = true // our ctx's doing, most likely
			return
		}
		if c.cacheErrors {
			if serr := c.r.SaveError(k, err); serr != nil {
				cl.err = fmt.Errorf("%w (and saving it failed: %w)", err, serr)
				return
			}
			c.mem.Store(k, &cacheEntry[V]{err: errors.New(errorText(err)), at: time.Now()})
		}
		return
	}
	cl.v = v
	if err := c.r.SaveResult(k, v); err != nil {
		cl.err = fmt.Errorf("checkpoint: cache %s: the value was computed but not saved: %w", c.r.name, err)
		return
	}
	c.mem.Store(k, &cacheEntry[V]{v: v, at: time.Now()})
}

// load reads k's latest outcome from disk: a value, or with WithCacheErrors
// a saved error, unless older than the TTL.
func (c *cacheCore[K, A, V]) load(k K) (*cacheEntry[V], bool, error) {
	r := c.r
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return nil, false, ErrClosed
	}
	s, seen := r.index.get(k)
	if !seen || (!s.done() && !c.cacheErrors) {
		r.mu.RUnlock()
		return nil, false, nil
	}
	j := r.errors
	if s.done() {
		j = r.results
	}
	line, err := j.readLine(s.offset())
	r.mu.RUnlock()
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: cache %s: %w", r.name, err)
	}
	e := &cacheEntry[V]{}
	if s.done() {
		rec, ok := parseRecord(line)
		if !ok {
			return nil, false, fmt.Errorf("%w: %s at byte %d is not a record", ErrCorrupt, j.path, s.offset())
		}
		if err := json.Unmarshal(rec.body, &e.v); err != nil {
			// Saved by an older version of the program, say: call again.
			r.log.Warn("checkpoint: a cached value does not decode; calling again", "name", r.name, "key", fmt.Sprint(k), "err", err)
			return nil, false, nil
		}
		e.at, _ = parseTimestamp(rec.ts)
	} else {
		var msg string
		msg, e.at = errorFields(line)
		e.err = errors.New(msg)
	}
	if c.ttl > 0 && time.Since(e.at) >= c.ttl {
		return nil, false, nil
	}
	return e, true, nil
}
