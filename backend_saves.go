package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// savesAhead is how many outcomes of one Process call may be on their way
// to the Backend at once.
const savesAhead = 4096

// asyncSaves lets Process's workers go on to their next item while their
// outcome is being committed: each save is sent from a goroutine of its own
// and waits there for its commit, so that one commit carries the outcomes
// of every worker that finished meanwhile, not only of those waiting, and
// the Backend's commits (one disk flush each) stop setting the pace. Nothing
// is acknowledged before its commit: the counts and the bar move when the
// save returns, the key stays leased (and renewed) until then, and Process
// returns after the last. A failed save stops the run and is its error.
type asyncSaves[K comparable] struct {
	inner  outcomeSaver[K]
	encode func(any) (json.RawMessage, error)
	cancel context.CancelFunc
	slots  chan struct{}
	wg     sync.WaitGroup

	mu                      sync.Mutex
	saving                  map[K]int // keys with an outcome on its way
	err                     error
	lostResults, lostErrors int
}

// busy reports whether an outcome of k is on its way: an item of the same
// key waits for it rather than running twice.
func (a *asyncSaves[K]) busy(k K) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.saving[k] > 0
}

// send saves in a goroutine of its own, once fewer than savesAhead are on
// their way.
func (a *asyncSaves[K]) send(k K, result bool, save func() error) {
	a.slots <- struct{}{}
	a.mu.Lock()
	a.saving[k]++
	a.mu.Unlock()
	a.wg.Go(func() {
		err := save()
		a.mu.Lock()
		if a.saving[k]--; a.saving[k] == 0 {
			delete(a.saving, k)
		}
		a.mu.Unlock()
		<-a.slots
		if err != nil {
			a.fail(err, result)
		}
	})
}

func (a *asyncSaves[K]) SaveResult(k K, v any) error {
	if err := a.failed(); err != nil {
		return err
	}
	// Encoded now, so that a result JSON cannot hold fails the item as
	// with files.
	raw, err := a.encode(v)
	if err != nil {
		return fmt.Errorf("checkpoint: result for key %v: %w", k, err)
	}
	a.send(k, true, func() error { return a.inner.SaveResult(k, raw) })
	return nil
}

func (a *asyncSaves[K]) SaveError(k K, failure error) error {
	if err := a.failed(); err != nil {
		return err
	}
	a.send(k, false, func() error { return a.inner.SaveError(k, failure) })
	return nil
}

func (a *asyncSaves[K]) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *asyncSaves[K]) fail(err error, result bool) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	if result {
		a.lostResults++
	} else {
		a.lostErrors++
	}
	a.mu.Unlock()
	a.cancel()
}

// encodeResultJSON encodes a result as SaveResult writes it.
func (r *Runner[K, T]) encodeResultJSON(v any) (json.RawMessage, error) {
	lb := r.getLineBuilder()
	defer r.putLineBuilder(lb)
	if err := encodeResult(lb.enc, v); err != nil {
		return nil, err
	}
	b := lb.buf.Bytes()
	return slices.Clone(b[:len(b)-1]), nil // without Encode's newline
}
