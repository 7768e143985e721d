package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func procOpen(t testing.TB, dir string, opts ...Option) *Runner[int, int] {
	t.Helper()
	opts = append([]Option{WithDir(dir), WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	r, err := Open[int, int]("proc", opts...)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func procInts(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
}

func procKey(i int) int { return i }

// procWaitGoroutines waits for the goroutine count to come back to base:
// a goroutine that has signalled it is done takes a moment to exit.
func procWaitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func TestProcessRecordsEveryOutcome(t *testing.T) {
	for _, workers := range []int{1, 4, 64} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			r := procOpen(t, t.TempDir())
			var running, peak atomic.Int64
			sum, err := r.Process(t.Context(), procInts(300), procKey, func(ctx context.Context, i int) (any, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(200 * time.Microsecond)
				if i%10 == 0 {
					return nil, fmt.Errorf("item %d is bad", i)
				}
				return i * 2, nil
			}, WithWorkers(workers))
			require.NoError(t, err)
			assert.Equal(t, Summary{Processed: 300, Succeeded: 270, Failed: 30, Elapsed: sum.Elapsed}, sum)
			assert.LessOrEqual(t, peak.Load(), int64(workers))
			if workers > 1 {
				assert.Greater(t, peak.Load(), int64(1), "items should run at once")
			}
			var v int
			found, err := r.Result(7, &v)
			require.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, 14, v)
			fails := r.AllErrors()
			require.Len(t, fails, 30)
			for _, f := range fails {
				assert.Equal(t, fmt.Sprintf("item %d is bad", f.Key), f.Error)
			}
			done, total := r.Progress()
			assert.Equal(t, 270, done)
			assert.Equal(t, 300, total)
		})
	}
}

func TestProcessSkipsCompletedKeys(t *testing.T) {
	r := procOpen(t, t.TempDir(), WithMaxAttempts(2))
	for i := range 50 {
		require.NoError(t, r.SaveResult(i, i))
	}
	// Key 60 has used up its attempts; key 61 may try once more.
	require.NoError(t, r.SaveError(60, errors.New("x")))
	require.NoError(t, r.SaveError(60, errors.New("x")))
	require.NoError(t, r.SaveError(61, errors.New("x")))

	var mu sync.Mutex
	var ran []int
	sum, err := r.Process(t.Context(), procInts(100), procKey, func(ctx context.Context, i int) (any, error) {
		mu.Lock()
		ran = append(ran, i)
		mu.Unlock()
		return i, nil
	}, WithWorkers(4))
	require.NoError(t, err)
	assert.Equal(t, 51, sum.Skipped)
	assert.Equal(t, 49, sum.Succeeded)
	slices.Sort(ran)
	assert.Equal(t, 50, ran[0])
	assert.NotContains(t, ran, 60)
	assert.Contains(t, ran, 61)
}

func TestProcessRecordsAPanicAndGoesOn(t *testing.T) {
	r := procOpen(t, t.TempDir())
	sum, err := r.Process(t.Context(), procInts(40), procKey, func(ctx context.Context, i int) (any, error) {
		if i == 7 {
			var m map[string]int
			m["x"]++ // a real bug, not a deliberate panic(...)
		}
		if i == 8 {
			panic(fmt.Sprintf("deliberate %d", i))
		}
		return i, nil
	}, WithWorkers(3), WithRetries(3))
	require.NoError(t, err)
	assert.Equal(t, 38, sum.Succeeded)
	assert.Equal(t, 2, sum.Failed)
	assert.Zero(t, sum.Retries, "a panic is a bug: never retried")
	fails := r.AllErrors()
	require.Len(t, fails, 2)
	byKey := map[int]string{fails[0].Key: fails[0].Error, fails[1].Key: fails[1].Error}
	assert.Contains(t, byKey[7], "panic: assignment to entry in nil map")
	assert.Contains(t, byKey[7], "process_test.go", "the stack shows where it panicked")
	assert.Contains(t, byKey[8], "panic: deliberate 8")
}

func TestProcessRetriesWithBackoff(t *testing.T) {
	errFlaky := errors.New("503 service unavailable")
	cases := []struct {
		name      string
		fails     int // failures before fn succeeds
		err       error
		retries   int
		wantCalls int
		wantSaved bool
		wantError string
	}{
		{"reaches success", 3, Retryable(errFlaky), 5, 4, true, ""},
		{"gives up", 10, Retryable(errFlaky), 2, 3, false, "503 service unavailable (after 3 attempts)"},
		{"not retryable", 3, errFlaky, 5, 1, false, "503 service unavailable"},
		{"no retries by default", 3, Retryable(errFlaky), 0, 1, false, "503 service unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := procOpen(t, t.TempDir())
				var calls []time.Time
				sum, err := r.Process(t.Context(), procInts(1), procKey, func(ctx context.Context, i int) (any, error) {
					calls = append(calls, time.Now())
					if len(calls) <= tc.fails {
						return nil, tc.err
					}
					return "ok", nil
				}, WithRetries(tc.retries), WithBackoff(100*time.Millisecond, 300*time.Millisecond))
				require.NoError(t, err)
				require.Len(t, calls, tc.wantCalls)
				assert.Equal(t, tc.wantCalls-1, sum.Retries)
				// Waits double from 100ms, capped at 300ms, each in the
				// upper half of its step.
				steps := []time.Duration{100, 200, 300, 300, 300}
				for i := 1; i < len(calls); i++ {
					wait, step := calls[i].Sub(calls[i-1]), steps[i-1]*time.Millisecond
					assert.GreaterOrEqual(t, wait, step/2, "retry %d", i)
					assert.LessOrEqual(t, wait, step, "retry %d", i)
				}
				assert.Equal(t, tc.wantSaved, r.IsCompleted(0))
				if tc.wantError != "" {
					fails := r.AllErrors()
					require.Len(t, fails, 1)
					assert.Equal(t, tc.wantError, fails[0].Error)
				}
			})
		})
	}
}

func TestProcessItemTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := procOpen(t, t.TempDir())
		var calls atomic.Int64
		sum, err := r.Process(t.Context(), procInts(2), procKey, func(ctx context.Context, i int) (any, error) {
			if i == 1 {
				return "fast", nil
			}
			calls.Add(1)
			<-ctx.Done() // a call that hangs until its time is up
			return nil, fmt.Errorf("fetch: %w", ctx.Err())
		}, WithItemTimeout(50*time.Millisecond), WithRetries(1), WithBackoff(time.Millisecond, time.Millisecond))
		require.NoError(t, err)
		assert.Equal(t, int64(2), calls.Load(), "a timeout is retryable")
		assert.Equal(t, 1, sum.Failed)
		fails := r.AllErrors()
		require.Len(t, fails, 1)
		assert.Equal(t, "timed out after 50ms: fetch: context deadline exceeded (after 2 attempts)", fails[0].Error)
		assert.True(t, r.IsCompleted(1))
	})
}

// TestProcessCancellation: no new items start, calls under way see their
// ctx cancelled, results that still arrive are recorded, interrupted items
// are not failures and are done again by the next run, and no goroutine is
// left behind.
func TestProcessCancellation(t *testing.T) {
	base := runtime.NumGoroutine()
	dir := t.TempDir()
	r := procOpen(t, dir)
	const workers, quick = 8, 20
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var started, blocked atomic.Int64
	sum, err := r.Process(ctx, procInts(1000), procKey, func(ctx context.Context, i int) (any, error) {
		started.Add(1)
		if i < quick {
			return i, nil
		}
		if blocked.Add(1) == workers {
			cancel() // every worker is now in a call
		}
		<-ctx.Done()
		if i == quick {
			return "finished anyway", nil // an outcome that arrives after the end
		}
		return nil, fmt.Errorf("call %d: %w", i, ctx.Err())
	}, WithWorkers(workers), WithRetries(3))
	require.ErrorIs(t, err, context.Canceled)
	procWaitGoroutines(t, base)

	assert.Equal(t, int64(quick+workers), started.Load(), "no item starts after the cancel")
	assert.Equal(t, quick+1, sum.Succeeded)
	assert.Zero(t, sum.Failed)
	assert.Zero(t, sum.Retries, "a cancelled call is not retried")
	// The calls under way but one, and maybe an item a worker took but did
	// not start.
	assert.GreaterOrEqual(t, sum.Interrupted, workers-1)
	assert.LessOrEqual(t, sum.Interrupted, workers)
	assert.Empty(t, r.AllErrors(), "interrupted items are not failures")

	require.NoError(t, r.Close())
	r2 := procOpen(t, dir)
	var next []int
	for i := range r2.Iterate(slices.Collect(procInts(1000)), procKey) {
		next = append(next, i)
	}
	require.Len(t, next, 1000-quick-1)
	assert.Equal(t, quick+1, next[0], "the interrupted items come first in the next run")
}

// TestProcessStartsNothingAfterCancel: when ctx ends, the workers are
// free while the feeder still holds an item; whether or not it hands it
// over, the item must not start. Several rounds, as the handover is a race.
func TestProcessStartsNothingAfterCancel(t *testing.T) {
	const workers = 4
	for round := range 20 {
		r := procOpen(t, t.TempDir())
		ctx, cancel := context.WithCancel(t.Context())
		var started atomic.Int64
		sum, err := r.Process(ctx, procInts(100), procKey, func(ctx context.Context, i int) (any, error) {
			if started.Add(1) == workers {
				cancel()
			}
			<-ctx.Done()
			return nil, ctx.Err()
		}, WithWorkers(workers))
		cancel()
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, int64(workers), started.Load(), "round %d", round)
		require.Zero(t, sum.Failed)
		require.Empty(t, r.AllErrors())
	}
}

func TestProcessContextDoneBeforeStart(t *testing.T) {
	r := procOpen(t, t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	sum, err := r.Process(ctx, procInts(10), procKey, func(ctx context.Context, i int) (any, error) {
		t.Error("fn ran")
		return nil, nil
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, sum.Processed)

	// With nothing left to do, an ended ctx is no error: the job is done.
	sum, err = r.Process(ctx, procInts(0), procKey, func(ctx context.Context, i int) (any, error) { return nil, nil })
	require.NoError(t, err)
	assert.Zero(t, sum.Processed)
}

func TestProcessReadsInputLazily(t *testing.T) {
	r := procOpen(t, t.TempDir())
	const workers = 4
	var pulled, finished atomic.Int64
	infinite := func(yield func(int) bool) {
		for i := 0; ; i++ {
			pulled.Add(1)
			if !yield(i) {
				return
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var worst atomic.Int64
	_, err := r.Process(ctx, infinite, procKey, func(ctx context.Context, i int) (any, error) {
		ahead := pulled.Load() - finished.Load()
		for w := worst.Load(); ahead > w && !worst.CompareAndSwap(w, ahead); w = worst.Load() {
		}
		if finished.Add(1) == 500 {
			cancel()
		}
		return i, nil
	}, WithWorkers(workers))
	require.ErrorIs(t, err, context.Canceled)
	// Read ahead: the items in the workers' hands and the one the feeder holds.
	assert.LessOrEqual(t, worst.Load(), int64(workers+1))
	assert.LessOrEqual(t, pulled.Load(), finished.Load()+workers+1)
}

func TestProcessCheckpointFailureStopsTheRun(t *testing.T) {
	base := runtime.NumGoroutine()
	r := procOpen(t, t.TempDir())
	sum, err := r.Process(t.Context(), procInts(1000), procKey, func(ctx context.Context, i int) (any, error) {
		if i == 20 {
			r.Close() // the checkpoint goes away under the run
		}
		return i, nil
	}, WithWorkers(4))
	require.ErrorIs(t, err, ErrClosed)
	assert.Less(t, sum.Processed+sum.Skipped+sum.Interrupted, 1000, "the run stops: %+v", sum)
	procWaitGoroutines(t, base)

	_, err = r.Process(t.Context(), procInts(1), procKey, func(ctx context.Context, i int) (any, error) { return i, nil })
	require.ErrorIs(t, err, ErrClosed)
}

func TestProcessResultThatIsNotJSON(t *testing.T) {
	r := procOpen(t, t.TempDir())
	sum, err := r.Process(t.Context(), procInts(5), procKey, func(ctx context.Context, i int) (any, error) {
		if i == 3 {
			return math.NaN(), nil
		}
		return float64(i), nil
	})
	require.NoError(t, err)
	assert.Equal(t, 4, sum.Succeeded)
	assert.Equal(t, 1, sum.Failed)
	fails := r.AllErrors()
	require.Len(t, fails, 1)
	assert.Equal(t, 3, fails[0].Key)
	assert.Contains(t, fails[0].Error, "unsupported value: NaN")
}

func TestProcessKeyThatCannotBeRecorded(t *testing.T) {
	r, err := Open[string, string]("keys", WithDir(t.TempDir()), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer r.Close()
	var ran atomic.Int64
	sum, err := r.Process(t.Context(), slices.Values([]string{"a", "b\xff", "c"}), func(s string) string { return s },
		func(ctx context.Context, s string) (any, error) {
			ran.Add(1)
			return s, nil
		})
	require.NoError(t, err, "one bad key must not stop the run")
	assert.Equal(t, int64(2), ran.Load())
	assert.Equal(t, Summary{Processed: 3, Succeeded: 2, Failed: 1, Elapsed: sum.Elapsed}, sum)
}

func TestProcessRunsOneItemPerKeyAtATime(t *testing.T) {
	r := procOpen(t, t.TempDir())
	var calls [3]atomic.Int64
	release := make(chan struct{})
	items := slices.Values([]int{1, 1, 2, 1, 2})
	go func() {
		time.Sleep(20 * time.Millisecond)
		close(release)
	}()
	sum, err := r.Process(t.Context(), items, procKey, func(ctx context.Context, i int) (any, error) {
		calls[i].Add(1)
		<-release
		return i, nil
	}, WithWorkers(4))
	require.NoError(t, err)
	assert.Equal(t, int64(1), calls[1].Load())
	assert.Equal(t, int64(1), calls[2].Load())
	assert.Equal(t, 3, sum.Skipped)
}

func TestProcessPanicInInputStopsWorkers(t *testing.T) {
	base := runtime.NumGoroutine()
	r := procOpen(t, t.TempDir())
	items := func(yield func(int) bool) {
		for i := range 10 {
			if !yield(i) {
				return
			}
		}
		panic("input broke")
	}
	assert.PanicsWithValue(t, "input broke", func() {
		r.Process(context.Background(), items, procKey, func(ctx context.Context, i int) (any, error) { return i, nil },
			WithWorkers(4))
	})
	procWaitGoroutines(t, base)
}

func TestProcessRefusesBadOptions(t *testing.T) {
	cases := map[string]ProcessOption{
		"no workers":       WithWorkers(0),
		"negative retries": WithRetries(-1),
		"zero backoff":     WithBackoff(0, time.Second),
		"max below start":  WithBackoff(time.Second, time.Millisecond),
		"negative timeout": WithItemTimeout(-time.Second),
		"negative total":   WithTotal(-5),
	}
	for name, opt := range cases {
		t.Run(name, func(t *testing.T) {
			r := procOpen(t, t.TempDir())
			_, err := r.Process(t.Context(), procInts(3), procKey, func(ctx context.Context, i int) (any, error) {
				t.Error("fn ran")
				return nil, nil
			}, opt)
			require.Error(t, err)
		})
	}
}

func TestRetryable(t *testing.T) {
	base := errors.New("rate limited")
	err := Retryable(base)
	assert.Equal(t, "rate limited", err.Error())
	assert.ErrorIs(t, err, base)
	assert.True(t, isRetryable(fmt.Errorf("call: %w", err)))
	assert.False(t, isRetryable(base))
	assert.NoError(t, Retryable(nil))
}

func TestBackoffStaysInItsStep(t *testing.T) {
	c := processConfig{backoffMin: 10 * time.Millisecond, backoffMax: time.Second}
	for n := 1; n <= 100; n++ {
		step := min(c.backoffMax, c.backoffMin<<min(n-1, 20))
		for range 20 {
			d := c.backoff(n)
			require.GreaterOrEqual(t, d, step/2, "retry %d", n)
			require.LessOrEqual(t, d, step, "retry %d", n)
		}
	}
}

// BenchmarkProcess measures Process's throughput on a call that takes 1 ms,
// as an I/O-bound job's would, against a bare pool of as many goroutines
// making the same calls and recording nothing, in alternating rounds.
// of-bare-pool is Process's rate over the bare pool's: 1 means the library
// costs nothing.
func BenchmarkProcess(b *testing.B) {
	call := func(ctx context.Context, i int) (any, error) {
		time.Sleep(time.Millisecond)
		return i, nil
	}
	barePool := func(workers, n int) {
		items := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range items {
					call(context.Background(), i)
				}
			})
		}
		for i := range n {
			items <- i
		}
		close(items)
		wg.Wait()
	}
	for _, workers := range []int{1, 4, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			r := procOpen(b, b.TempDir())
			round := max(200, 20*workers)
			var lib, bare time.Duration
			for start := 0; start < b.N; start += round {
				n := min(round, b.N-start)
				items := func(yield func(int) bool) {
					for i := start; i < start+n && yield(i); i++ {
					}
				}
				t0 := time.Now()
				sum, err := r.Process(context.Background(), items, procKey, call, WithWorkers(workers))
				lib += time.Since(t0)
				if err != nil || sum.Succeeded != n {
					b.Fatal(err, sum)
				}
				t0 = time.Now()
				barePool(workers, n)
				bare += time.Since(t0)
			}
			b.ReportMetric(float64(lib.Nanoseconds())/float64(b.N), "ns/op")
			b.ReportMetric(float64(b.N)/lib.Seconds(), "items/s")
			b.ReportMetric(bare.Seconds()/lib.Seconds(), "of-bare-pool")
		})
	}
}
