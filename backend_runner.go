package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A Runner with a Backend keeps the same index as with files, as a cache of
// what it knows: the keys that had an outcome when it opened, and the
// outcomes it saw since (its own saves, and completions that claims
// reported). The Backend is the truth: an item is yielded only once the
// Backend has leased its key to this runner.

// remote is a Runner's state when its checkpoint lives in a Backend.
type remote struct {
	cp    BackendCheckpoint
	lease time.Duration

	mu     sync.Mutex
	inHand map[string]uint64 // JSON key leased to this runner -> the claiming loop's id
	loops  uint64            // ids of claiming loops
	seq    int64             // stands for a journal offset in slots: see noteRemote

	dropped atomic.Int64 // late saves that lost to another runner's completion
}

const (
	claimBatchMin = 16   // first claim of a loop, and the smallest
	claimBatchMax = 4000 // keys in one claim round trip at most
	releaseWait   = 10 * time.Second
)

func openRemote[K comparable, T any](name string, o *options, keys keyCodec[K]) (*Runner[K, T], error) {
	lease := o.lease
	if lease == 0 {
		lease = DefaultLease
	}
	if lease < 0 {
		return nil, fmt.Errorf("checkpoint: lease %v, want more than 0", lease)
	}
	ctx := context.Background()
	cp, err := o.backend.Attach(ctx, name, AttachConfig{
		Lease: lease, MaxAttempts: o.maxAttempts, Fresh: o.fresh, Logger: o.logger,
	})
	if err != nil {
		return nil, backendErr(fmt.Sprintf("open %q", name), err)
	}
	r := &Runner[K, T]{
		name:        name,
		maxAttempts: o.maxAttempts,
		log:         o.logger,
		keys:        keys,
		backend:     &remote{cp: cp, lease: lease, inHand: make(map[string]uint64)},
		// Stand-ins for the journals: their sizes count saves, so that
		// BatchRunner's marks work as with files (see noteRemote).
		results:   &journal{path: name + " results (backend)"},
		errors:    &journal{path: name + " errors (backend)"},
		index:     newIndex(keys.hash, 0),
		startedAt: time.Now(),
	}
	var arena keyArena
	err = cp.Load(ctx, func(raw []byte, s KeyState) error {
		k, err := r.keys.keep(raw, &arena)
		if err != nil {
			return fmt.Errorf("key %s: %w", raw, err)
		}
		r.noteLocked(k, s.Done, s.Attempts)
		return nil
	})
	if err != nil {
		return nil, errors.Join(backendErr(fmt.Sprintf("load %q", name), err), cp.Close())
	}
	if r.completed+r.failed > 0 {
		r.log.Info("checkpoint: resumed", "name", name, "completed", r.completed, "failed", r.failed)
	}
	return r, nil
}

// noteRemote records an outcome in the local index. A slot's offset is a
// count of outcomes noted, and the stand-in journals' sizes follow it, so
// that "saved after a mark" (BatchRunner) means what it means with files.
func (r *Runner[K, T]) noteRemote(k K, done bool, attempts int) {
	r.mu.Lock()
	r.noteLocked(k, done, attempts)
	r.mu.Unlock()
}

func (r *Runner[K, T]) noteLocked(k K, done bool, attempts int) {
	sp := r.index.upsert(k)
	old := *sp
	if attempts < 0 {
		attempts = old.attempts()
	}
	off := r.backend.seq
	r.backend.seq++
	r.results.size, r.errors.size = r.backend.seq, r.backend.seq
	s := slot(min(attempts, attemptMax))<<attemptShift | slot(off&offsetMask)
	switch {
	case done && !old.done():
		s |= slotDone
		r.completed++
		if old != 0 {
			r.failed--
		}
	case done:
		s |= slotDone
	case old == 0:
		r.failed++
	case old.done():
		r.completed--
		r.failed++
	}
	*sp = s
}

func (b *remote) holds(kb []byte) bool {
	b.mu.Lock()
	_, ok := b.inHand[string(kb)]
	b.mu.Unlock()
	return ok
}

// settle removes kb from the keys in hand and reports whether it was there.
func (b *remote) settle(kb []byte) bool {
	b.mu.Lock()
	_, ok := b.inHand[string(kb)]
	delete(b.inHand, string(kb))
	b.mu.Unlock()
	return ok
}

// held returns the keys loop holds (every key if loop is 0); with drop, it
// also forgets them.
func (b *remote) held(loop uint64, drop bool) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys [][]byte
	for k, l := range b.inHand {
		if loop == 0 || l == loop {
			keys = append(keys, []byte(k))
			if drop {
				delete(b.inHand, k)
			}
		}
	}
	return keys
}

// release gives back the leases of keys, on a context of its own: the
// caller's may be what ended the loop. A failure only delays the keys until
// their leases run out, so it is logged.
func (r *Runner[K, T]) release(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	defer cancel()
	for chunk := range slices.Chunk(keys, claimBatchMax) {
		if err := r.backend.cp.Release(ctx, chunk); err != nil {
			r.log.Warn("checkpoint: could not release claimed items; they are free when their lease ends",
				"name", r.name, "items", len(keys), "err", err)
			return
		}
	}
}

// claimLoop hands out the items of one loop (Iterate, IterateSeq, Process)
// once their keys are claimed, and renews the claims until finish.
type claimLoop[K comparable, T, U any] struct {
	r       *Runner[K, T]
	ctx     context.Context
	id      uint64
	keyFn   func(U) K
	size    int // keys in the next claim
	skipped int // items not yielded: completed, out of attempts

	stopRenew context.CancelFunc
	renewing  sync.WaitGroup
	renewed   atomic.Int64 // UnixNano when the latest renewal of all this loop's keys was sent
	saving    func(K) bool // whether an outcome of the key is on its way (Process); nil: none
}

type claimItem[K comparable, U any] struct {
	key  K
	kb   []byte
	item U
}

func newClaimLoop[K comparable, T, U any](ctx context.Context, r *Runner[K, T], keyFn func(U) K) *claimLoop[K, T, U] {
	b := r.backend
	b.mu.Lock()
	b.loops++
	id := b.loops
	b.mu.Unlock()
	l := &claimLoop[K, T, U]{r: r, ctx: ctx, id: id, keyFn: keyFn, size: claimBatchMin}
	rctx, cancel := context.WithCancel(ctx)
	l.stopRenew = cancel
	l.renewing.Go(func() { l.renew(rctx) })
	return l
}

// renew extends the leases of the keys the loop holds every lease/3, until
// the loop finishes.
func (l *claimLoop[K, T, U]) renew(ctx context.Context) {
	b := l.r.backend
	t := time.NewTicker(b.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		keys := b.held(l.id, false)
		ok := true
		for chunk := range slices.Chunk(keys, claimBatchMax) {
			if err := b.cp.Renew(ctx, chunk); err != nil {
				if ctx.Err() == nil {
					l.r.log.Warn("checkpoint: could not renew leases", "name", l.r.name, "items", len(keys), "err", err)
				}
				ok = false
				break
			}
		}
		if ok {
			l.renewed.Store(sent.UnixNano())
		}
	}
}

// finish stops the renewals and releases the keys claimed but not saved.
func (l *claimLoop[K, T, U]) finish() {
	l.stopRenew()
	l.renewing.Wait()
	l.r.release(l.r.backend.held(l.id, true))
}

// run yields the items of items whose key this runner could claim, in input
// order within each claim. Claims go ahead of the items handed out: while
// the items of one claim are yielded, the next claimsAhead claims are on
// their way, so that the workers do not wait for a round trip. Items whose
// key another live runner holds are tried again after the input ends, until
// every one is completed, out of attempts, or yielded. It returns when yield
// returns false, the runner is closed (recorded for Err), or a claim fails.
func (l *claimLoop[K, T, U]) run(items iter.Seq[U], yield func(U) bool) error {
	r := l.r
	var batch, later []claimItem[K, U]
	var c cursor
	var ahead []*claimCall[K, U]
	defer func() { // none outlives run; their keys are released by finish
		for _, cl := range ahead {
			<-cl.done
		}
	}()
	// send starts the claim of batch and, once claimsAhead are on their
	// way, hands out the items of the oldest.
	send := func(batch []claimItem[K, U]) (bool, error) {
		if cl := l.start(batch, &later); cl != nil {
			ahead = append(ahead, cl)
		}
		if len(ahead) <= claimsAhead {
			return true, nil
		}
		cl := ahead[0]
		ahead = ahead[1:]
		return l.deliver(cl, &later, yield)
	}
	for item := range items {
		k := l.keyFn(item)
		if !r.pending(k, &c) { // completed, or out of attempts, as far as we know
			if r.runnerClosed() {
				return nil
			}
			l.skipped++
			continue
		}
		kb, err := r.keys.encode(nil, k)
		if err != nil {
			// Not a key the checkpoint can hold: SaveResult will say so.
			if !yield(item) {
				return nil
			}
			continue
		}
		batch = append(batch, claimItem[K, U]{k, kb, item})
		if len(batch) < l.size {
			continue
		}
		more, err := send(batch)
		if !more || err != nil {
			return err
		}
		batch = nil
	}
	if len(batch) > 0 {
		if more, err := send(batch); !more || err != nil {
			return err
		}
	}
	for len(ahead) > 0 {
		cl := ahead[0]
		ahead = ahead[1:]
		if more, err := l.deliver(cl, &later, yield); !more || err != nil {
			return err
		}
	}
	// The keys others held: wait for them to be done, given up or free,
	// looking soon at first (their holders are usually about to finish
	// them), then less and less often.
	maxPoll := min(max(r.backend.lease/8, 20*time.Millisecond), time.Second)
	poll := min(20*time.Millisecond, maxPoll)
	for len(later) > 0 {
		t := time.NewTimer(poll)
		select {
		case <-l.ctx.Done():
			t.Stop()
			return l.ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
		if r.runnerClosed() {
			r.setErr(ErrClosed)
			return nil
		}
		again := later[:0:0]
		for _, it := range later {
			if r.pending(it.key, &c) { // else completed meanwhile, by this runner or reported by a claim
				again = append(again, it)
			} else {
				l.skipped++
			}
		}
		later = nil
		for len(again) > 0 {
			n := min(len(again), claimBatchMax)
			if more, err := l.claim(again[:n], &later, yield); !more || err != nil {
				return err
			}
			again = again[n:]
		}
	}
	return nil
}

// claimsAhead is how many claims a loop sends before it hands out the items
// of the first.
const claimsAhead = 2

// A claimCall is a claim on its way.
type claimCall[K comparable, U any] struct {
	send   []claimItem[K, U]
	keys   [][]byte
	states []ClaimState
	sent   time.Time
	err    error
	done   chan struct{}
}

// claim claims the keys of batch in one round trip and yields the items it
// got. Items with a key held elsewhere, or by this runner for an item still
// in hand, go to later. more is false once yield returned false.
func (l *claimLoop[K, T, U]) claim(batch []claimItem[K, U], later *[]claimItem[K, U], yield func(U) bool) (more bool, err error) {
	cl := l.start(batch, later)
	if cl == nil {
		return true, nil
	}
	return l.deliver(cl, later, yield)
}

// start sends the claim of batch's keys, or returns nil if none is to be
// sent. A key twice in one claim, or in hand in another loop, goes to later:
// its first item's outcome decides whether it runs again. The keys sent are
// reserved to this loop before the claim, since the database gives a key
// this runner holds to any of its loops.
func (l *claimLoop[K, T, U]) start(batch []claimItem[K, U], later *[]claimItem[K, U]) *claimCall[K, U] {
	b := l.r.backend
	cl := &claimCall[K, U]{
		keys: make([][]byte, 0, len(batch)),
		send: make([]claimItem[K, U], 0, len(batch)),
		done: make(chan struct{}),
	}
	seen := make(map[string]struct{}, len(batch))
	b.mu.Lock()
	for _, it := range batch {
		_, dup := seen[string(it.kb)]
		if l2, held := b.inHand[string(it.kb)]; dup || held && l2 != l.id {
			*later = append(*later, it)
			continue
		}
		seen[string(it.kb)] = struct{}{}
		b.inHand[string(it.kb)] = l.id
		cl.keys = append(cl.keys, it.kb)
		cl.send = append(cl.send, it)
	}
	b.mu.Unlock()
	if len(cl.keys) == 0 {
		return nil
	}
	cl.states = make([]ClaimState, len(cl.keys))
	cl.sent = time.Now()
	go func() {
		defer close(cl.done)
		cl.err = b.cp.Claim(l.ctx, cl.keys, cl.states)
	}()
	return cl
}

// deliver waits for the claim cl and yields the items it got.
func (l *claimLoop[K, T, U]) deliver(cl *claimCall[K, U], later *[]claimItem[K, U], yield func(U) bool) (more bool, err error) {
	r, b := l.r, l.r.backend
	<-cl.done
	if cl.err != nil {
		b.mu.Lock()
		for _, k := range cl.keys {
			delete(b.inHand, string(k))
		}
		b.mu.Unlock()
		if l.ctx.Err() != nil {
			return false, l.ctx.Err()
		}
		return false, backendErr("claim", cl.err)
	}
	if r.runnerClosed() {
		r.setErr(ErrClosed)
		return false, nil
	}
	b.mu.Lock()
	for i, it := range cl.send {
		if cl.states[i] != ClaimTaken {
			delete(b.inHand, string(it.kb)) // reserved by start
		}
	}
	b.mu.Unlock()
	start := time.Now()
	if debugClaims {
		fmt.Printf("DEBUG claim %q -> %v\n", cl.keys, cl.states)
	}
	var lapsed []claimItem[K, U]
	var c cursor
	for i, it := range cl.send {
		switch cl.states[i] {
		case ClaimTaken:
			// Claims go ahead of the items handed out: an earlier item
			// of the same key may have been saved since, or be being saved.
			if !r.pending(it.key, &c) {
				b.settle(it.kb)
				l.skipped++
				continue
			}
			if l.saving != nil && l.saving(it.key) {
				*later = append(*later, it)
				continue
			}
			// An item is handed out only while its lease surely holds: if
			// neither the claim nor a renewal was sent within 3/4 of a
			// lease (the database was unreachable, or the items before it
			// took long), claim it again first.
			if lapsed != nil || !l.leaseHolds(cl.sent) {
				lapsed = append(lapsed, it)
				continue
			}
			if !yield(it.item) {
				return false, nil
			}
		case ClaimDone:
			r.noteRemote(it.key, true, -1)
			l.skipped++
		case ClaimExhausted:
			l.skipped++
		default:
			*later = append(*later, it)
		}
	}
	l.resize(time.Since(start))
	if len(lapsed) > 0 {
		return l.claim(lapsed, later, yield)
	}
	return true, nil
}

func (l *claimLoop[K, T, U]) leaseHolds(claimed time.Time) bool {
	base := max(claimed.UnixNano(), l.renewed.Load())
	return time.Now().UnixNano() < base+int64(l.r.backend.lease)*3/4
}

// resize sets the size of the next claim from how long this one's items
// took: claims grow while items are quick (fewer round trips), and shrink
// when items are slow, so that a runner does not sit on keys that other
// machines could be doing.
func (l *claimLoop[K, T, U]) resize(took time.Duration) {
	target := min(l.r.backend.lease/4, time.Second)
	switch {
	case took < target/2: // including batches mostly done elsewhere
		l.size = min(2*l.size, claimBatchMax)
	case took > target:
		l.size = max(l.size/2, claimBatchMin)
	}
}

// remoteIterate is Iterate and IterateSeq on a Backend; total is len(items),
// or -1 for a stream.
func (r *Runner[K, T]) remoteIterate(items iter.Seq[T], keyFn func(T) K, total int) iter.Seq[T] {
	return func(yield func(T) bool) {
		if total >= 0 {
			r.total.Store(int64(total))
		} else {
			r.total.Store(0)
			items = r.counted(items)
		}
		if r.runnerClosed() {
			r.setErr(ErrClosed)
			return
		}
		l := newClaimLoop(context.Background(), r, keyFn)
		defer l.finish()
		if err := l.run(items, yield); err != nil {
			r.setErr(err)
		}
	}
}

// remoteIterateIndexed is BatchRunner.IterateWithProgress's loop on a
// Backend; it reports whether the loop ran to its end.
func (r *Runner[K, T]) remoteIterateIndexed(items []T, keyFn func(T) K, p *progress, yield func(int, T) bool) (complete bool) {
	l := newClaimLoop(context.Background(), r, func(i int) K { return keyFn(items[i]) })
	defer l.finish()
	stopped := false
	err := l.run(func(yield func(int) bool) {
		for i := range items {
			if !yield(i) {
				return
			}
		}
	}, func(i int) bool {
		p.handOut()
		stopped = !yield(i, items[i])
		return !stopped
	})
	if err != nil {
		r.setErr(err)
	}
	return !stopped && err == nil && !r.runnerClosed()
}

// counted counts the items of a stream in Progress's total as they are read.
func (r *Runner[K, T]) counted(items iter.Seq[T]) iter.Seq[T] {
	return func(yield func(T) bool) {
		for item := range items {
			r.total.Add(1)
			if !yield(item) {
				return
			}
		}
	}
}

// remoteProcess is Process on a Backend: the items reach the workers once
// claimed, and the claims are renewed until the last outcome is committed.
// A worker goes on to its next item while its outcome is being committed
// (see asyncSaves); Process returns after every commit.
func (r *Runner[K, T]) remoteProcess(ctx context.Context, save outcomeSaver[K], items iter.Seq[T], keyFn func(T) K,
	fn func(ctx context.Context, item T) (any, error), cfg processConfig, bar *progress) (Summary, error) {
	start := time.Now()
	cfg.claimed = true
	l := newClaimLoop(ctx, r, keyFn)
	var claimErr error
	claimed := func(yield func(T) bool) {
		claimErr = l.run(items, yield)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	as := &asyncSaves[K]{inner: save, encode: r.encodeResultJSON, cancel: cancel,
		slots: make(chan struct{}, savesAhead), saving: make(map[K]int)}
	l.saving = as.busy
	sum, err := r.process(pctx, as, claimed, keyFn, fn, cfg, bar)
	as.wg.Wait()
	l.finish() // after the commits: a key is in hand until its outcome is
	sum.Skipped += l.skipped
	sum.Elapsed = time.Since(start)
	if as.err != nil {
		sum.Succeeded -= as.lostResults
		sum.Failed -= as.lostErrors
		sum.Processed = sum.Succeeded + sum.Failed
		if err == nil || errors.Is(err, context.Canceled) && ctx.Err() == nil {
			err = as.err
		}
	}
	if err == nil && claimErr != nil && ctx.Err() == nil {
		err = claimErr
	}
	return sum, err
}

func (r *Runner[K, T]) remoteSaveResult(key K, result any) error {
	lb := r.getLineBuilder()
	defer r.putLineBuilder(lb)
	if err := encodeResult(lb.enc, result); err != nil {
		return fmt.Errorf("checkpoint: result for key %v: %w", key, err)
	}
	res := lb.buf.Bytes()
	res = res[:len(res)-1] // Encode's newline
	kb, err := r.keys.encode(nil, key)
	if err != nil {
		return fmt.Errorf("checkpoint: key %v: %w", key, err)
	}
	if r.runnerClosed() {
		return ErrClosed
	}
	b := r.backend
	if debugClaims && !b.holds(kb) {
		fmt.Fprintf(os.Stderr, "DEBUG unclaimed save %s\n", kb)
	}
	saved, err := b.cp.SaveResult(context.Background(), kb, res, b.holds(kb))
	if err != nil {
		return backendErr("save result", err)
	}
	b.settle(kb)
	if !saved {
		b.dropped.Add(1)
		r.log.Warn("checkpoint: result not recorded: another runner completed the item first, after this runner's lease on it ran out",
			"name", r.name, "key", string(kb))
	}
	r.noteRemote(key, true, -1)
	return nil
}

func (r *Runner[K, T]) remoteSaveError(key K, failure error) error {
	kb, err := r.keys.encode(nil, key)
	if err != nil {
		return fmt.Errorf("checkpoint: key %v: %w", key, err)
	}
	if r.runnerClosed() {
		return ErrClosed
	}
	b := r.backend
	attempts, saved, err := b.cp.SaveError(context.Background(), kb, errorText(failure), b.holds(kb))
	if err != nil {
		return backendErr("save error", err)
	}
	b.settle(kb)
	if !saved {
		b.dropped.Add(1)
		r.log.Warn("checkpoint: failure not recorded: another runner completed the item first, after this runner's lease on it ran out",
			"name", r.name, "key", string(kb))
		r.noteRemote(key, true, -1)
		return nil
	}
	r.noteRemote(key, false, attempts)
	return nil
}

func (r *Runner[K, T]) remoteResult(key K, v any) (bool, error) {
	if r.runnerClosed() {
		return false, ErrClosed
	}
	kb, err := r.keys.encode(nil, key)
	if err != nil {
		return false, fmt.Errorf("checkpoint: key %v: %w", key, err)
	}
	res, found, err := r.backend.cp.Result(context.Background(), kb)
	if err != nil || !found {
		return false, backendErr("read result", err)
	}
	if err := json.Unmarshal(res, v); err != nil {
		return true, fmt.Errorf("checkpoint: result for key %v: %w", key, err)
	}
	return true, nil
}

var errStopStream = errors.New("stop")

func (r *Runner[K, T]) remoteResults() iter.Seq2[K, json.RawMessage] {
	return func(yield func(K, json.RawMessage) bool) {
		if r.runnerClosed() {
			r.setErr(ErrClosed)
			return
		}
		err := r.backend.cp.Results(context.Background(), func(kb, res []byte) error {
			k, err := r.keys.decode(kb)
			if err != nil {
				return fmt.Errorf("key %s: %w", kb, err)
			}
			if !yield(k, slices.Clone(json.RawMessage(res))) {
				return errStopStream
			}
			return nil
		})
		if err != nil && err != errStopStream {
			r.setErr(backendErr("read results", err))
		}
	}
}

func (r *Runner[K, T]) remoteErrors() []Failure[K] {
	if r.runnerClosed() {
		r.setErr(ErrClosed)
		return nil
	}
	var out []Failure[K]
	err := r.backend.cp.Errors(context.Background(), func(f BackendFailure) error {
		k, err := r.keys.decode(f.Key)
		if err != nil {
			return fmt.Errorf("key %s: %w", f.Key, err)
		}
		out = append(out, Failure[K]{Key: k, Error: f.Error, Attempts: f.Attempts, Time: f.Time})
		return nil
	})
	if err != nil {
		r.setErr(backendErr("read errors", err))
	}
	return out
}

func (r *Runner[K, T]) remoteClear() error {
	if r.runnerClosed() {
		return ErrClosed
	}
	if err := r.backend.cp.Clear(context.Background()); err != nil {
		return backendErr("clear", err)
	}
	r.backend.held(0, true)
	r.mu.Lock()
	r.index.reset(0)
	r.completed, r.failed = 0, 0
	r.total.Store(0)
	r.startedAt = time.Now()
	r.gen++
	r.mu.Unlock()
	return nil
}

func (r *Runner[K, T]) remoteClose() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()
	r.release(r.backend.held(0, true))
	return backendErr("close", r.backend.cp.Close())
}

var debugClaims = os.Getenv("DEBUG_CLAIMS") != ""
