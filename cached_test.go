package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type answer struct {
	Text   string `json:"text"`
	Tokens int    `json:"tokens"`
}

func TestCachedSecondRunMakesNoCalls(t *testing.T) {
	dir := t.TempDir()
	var calls atomic.Int64
	ask := func(ctx context.Context, q string) (answer, error) {
		calls.Add(1)
		return answer{Text: "re: " + q, Tokens: len(q)}, nil
	}
	for run := range 2 {
		c, err := Cached("llm", ask, WithDir(dir), flQuiet())
		require.NoError(t, err)
		for i := range 10 {
			q := "question " + strconv.Itoa(i)
			for range 2 {
				a, err := c.Get(context.Background(), q)
				require.NoError(t, err)
				assert.Equal(t, answer{Text: "re: " + q, Tokens: len(q)}, a)
			}
		}
		require.NoError(t, c.Close())
		assert.EqualValues(t, 10, calls.Load(), "run %d", run)
		_, err = c.Get(context.Background(), "question 1")
		assert.ErrorIs(t, err, ErrClosed)
	}
}

func TestCachedOneCallPerKey(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	c, err := Cached("one", func(ctx context.Context, k int) (int, error) {
		calls.Add(1)
		<-release
		return k * 2, nil
	}, WithDir(t.TempDir()), flQuiet())
	require.NoError(t, err)
	defer c.Close()
	const n = 64
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(n)
	results := make([]int, n)
	for i := range n {
		wg.Go(func() {
			ready.Done()
			v, err := c.Get(context.Background(), 7)
			assert.NoError(t, err)
			results[i] = v
		})
	}
	ready.Wait()
	time.Sleep(20 * time.Millisecond) // let them all reach Get; the count holds either way
	close(release)
	wg.Wait()
	assert.EqualValues(t, 1, calls.Load(), "64 goroutines missing one key make one call")
	for _, v := range results {
		assert.Equal(t, 14, v)
	}
}

func TestCachedErrors(t *testing.T) {
	for _, cacheErrors := range []bool{false, true} {
		t.Run(fmt.Sprint(cacheErrors), func(t *testing.T) {
			dir := t.TempDir()
			var calls atomic.Int64
			fn := func(ctx context.Context, k string) (string, error) {
				calls.Add(1)
				return "", errors.New("rate limited")
			}
			opts := []Option{WithDir(dir), flQuiet()}
			if cacheErrors {
				opts = append(opts, WithCacheErrors())
			}
			for range 2 { // two runs
				c, err := Cached("e", fn, opts...)
				require.NoError(t, err)
				for range 2 {
					_, err := c.Get(context.Background(), "k")
					assert.EqualError(t, err, "rate limited")
				}
				require.NoError(t, c.Close())
			}
			want := 4
			if cacheErrors {
				want = 1
			}
			assert.EqualValues(t, want, calls.Load())
		})
	}
}

func TestCachedTTL(t *testing.T) {
	dir := t.TempDir()
	var calls atomic.Int64
	fn := func(ctx context.Context, k int) (int64, error) { return calls.Add(1), nil }
	get := func(opts ...Option) int64 {
		c, err := Cached("ttl", fn, append([]Option{WithDir(dir), flQuiet()}, opts...)...)
		require.NoError(t, err)
		defer c.Close()
		v, err := c.Get(context.Background(), 1)
		require.NoError(t, err)
		return v
	}
	assert.EqualValues(t, 1, get())
	assert.EqualValues(t, 1, get(WithTTL(time.Hour)), "fresh enough")
	time.Sleep(2 * time.Millisecond)
	assert.EqualValues(t, 2, get(WithTTL(time.Millisecond)), "expired: called again and saved")
	assert.EqualValues(t, 2, get(), "the new value is the saved one")
	_, err := Cached("ttl2", fn, WithDir(dir), WithTTL(-1))
	assert.Error(t, err)

	// In memory too: an entry read in this run expires.
	c, err := Cached("ttl", fn, WithDir(dir), flQuiet(), WithTTL(time.Millisecond))
	require.NoError(t, err)
	defer c.Close()
	v, _ := c.Get(context.Background(), 5)
	time.Sleep(2 * time.Millisecond)
	w, _ := c.Get(context.Background(), 5)
	assert.NotEqual(t, v, w)
}

// When the caller running the shared call gives up, the others call again
// instead of getting its ctx's error.
func TestCachedLeaderCancelled(t *testing.T) {
	started := make(chan struct{})
	var calls atomic.Int64
	c, err := Cached("lead", func(ctx context.Context, k int) (int, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 42, nil
	}, WithDir(t.TempDir()), flQuiet())
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, 1)
		leader <- err
	}()
	<-started
	follower := make(chan int, 1)
	go func() {
		v, err := c.Get(context.Background(), 1)
		assert.NoError(t, err)
		follower <- v
	}()
	time.Sleep(10 * time.Millisecond) // the follower waits on the call
	cancel()
	assert.ErrorIs(t, <-leader, context.Canceled)
	assert.Equal(t, 42, <-follower)
	assert.EqualValues(t, 2, calls.Load())

	// A waiter whose own ctx ends stops waiting.
	block := make(chan struct{})
	entered := make(chan struct{})
	c2, err := Cached("wait", func(ctx context.Context, k int) (int, error) {
		close(entered) // once: the second Get must wait, not call
		<-block
		return 1, nil
	}, WithDir(t.TempDir()), flQuiet())
	require.NoError(t, err)
	defer c2.Close()
	go c2.Get(context.Background(), 1)
	<-entered
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer wcancel()
	_, err = c2.Get(wctx, 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	close(block)
}

func TestCachedPanicDoesNotHangWaiters(t *testing.T) {
	var calls atomic.Int64
	started := make(chan struct{})
	release := make(chan struct{})
	c, err := Cached("p", func(ctx context.Context, k int) (int, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
			panic("boom")
		}
		return 1, nil
	}, WithDir(t.TempDir()), flQuiet())
	require.NoError(t, err)
	defer c.Close()
	go func() {
		defer func() { recover() }()
		c.Get(context.Background(), 1)
	}()
	<-started
	done := make(chan int)
	go func() {
		v, _ := c.Get(context.Background(), 1)
		done <- v
	}()
	time.Sleep(10 * time.Millisecond)
	close(release)
	assert.Equal(t, 1, <-done)
}

func TestCachedBy(t *testing.T) {
	type req struct {
		Model  string
		Prompt []string
	}
	dir := t.TempDir()
	var calls atomic.Int64
	fn := func(ctx context.Context, r req) (string, error) {
		calls.Add(1)
		return r.Model + ":" + r.Prompt[0], nil
	}
	key := func(r req) string { return HashKey(r) }
	for range 2 {
		c, err := CachedBy("by", key, fn, WithDir(dir), flQuiet())
		require.NoError(t, err)
		v, err := c.Get(context.Background(), req{"m", []string{"hi"}})
		require.NoError(t, err)
		assert.Equal(t, "m:hi", v)
		require.NoError(t, c.Close())
	}
	assert.EqualValues(t, 1, calls.Load())
	assert.Len(t, HashKey(1, "a"), 32)
	assert.NotEqual(t, HashKey(1, "a"), HashKey("1", "a"))
	assert.Len(t, HashKey(make(chan int)), 32, "not JSON: hashed from %#v")
}

// BenchmarkCacheHit compares a hit in a Cache with a hit in a sync.Map of
// the same keys: the goal is at most 2x.
func BenchmarkCacheHit(b *testing.B) {
	const n = 1024
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	b.Run("cache", func(b *testing.B) {
		c, err := Cached("bench", func(ctx context.Context, k string) (int, error) { return len(k), nil },
			WithDir(b.TempDir()), flQuiet())
		require.NoError(b, err)
		defer c.Close()
		ctx := context.Background()
		for _, k := range keys {
			c.Get(ctx, k)
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := c.Get(ctx, keys[i&(n-1)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
	b.Run("syncmap", func(b *testing.B) {
		var m sync.Map
		for _, k := range keys {
			m.Store(k, len(k))
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := m.Load(keys[i&(n-1)]); !ok {
					b.Fatal("missing")
				}
				i++
			}
		})
	})
}
