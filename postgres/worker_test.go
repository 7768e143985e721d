package postgres

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// A worker is this test binary started again with workerEnv set: one
// machine of the fault test. It runs the job over its mode's share of the
// items 0..n-1, each taking a random time up to ITEM_TIME, and logs to
// its own file, one write per line:
//
//	S key pid t   fn started on key (t: wall clock, ns)
//	E key pid t nonce   fn ended with a result carrying nonce
//	A key pid t nonce   SaveResult of that result returned nil
//
// Mode "process" runs Runner.Process with 16 workers (no A lines: the save
// is inside Process); mode "iterate" runs 16 loops of IterateSeq on one
// runner, each saving itself. Each mode runs its own share of the keys (see
// runsKey).
const workerEnv = "CHECKPOINT_PG_WORKER"

// runsKey reports whether the workers of mode run key i. The keys go by
// threes: i%3 == 0 is run by the iterate workers only, i%3 == 2 by the
// process workers only, and i%3 == 1 by both, all along the run. Left to
// compete for every key, the process workers, which claim thousands of keys
// ahead and commit in the background, would take nearly all of them before
// the iterate workers claim any, and the iterate workers' SaveResult calls
// are the only acknowledged saves the fault test can check one by one: a
// third of the keys are theirs alone, so that check covers at least that
// many items, while the shared third keeps the two modes racing for keys.
func runsKey(mode string, i int) bool {
	switch i % 3 {
	case 0:
		return mode == "iterate"
	case 2:
		return mode == "process"
	}
	return true
}

type workerResult struct {
	Pid   int   `json:"w"`
	Nonce int64 `json:"n"`
}

func workerMain() int {
	url, mode := os.Getenv("PG_URL"), os.Getenv(workerEnv)
	n, _ := strconv.Atoi(os.Getenv("ITEMS"))
	lease, _ := time.ParseDuration(os.Getenv("LEASE"))
	itemTime, _ := time.ParseDuration(os.Getenv("ITEM_TIME"))
	itemTime = max(itemTime, time.Microsecond)
	f, err := os.OpenFile(os.Getenv("LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	pid := os.Getpid()
	logf := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		mu.Lock()
		f.WriteString(line)
		mu.Unlock()
	}
	ctx := context.Background()
	s, err := Open(ctx, url, WithRetryFor(time.Minute), WithLogger(quiet))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open store:", err)
		return 1
	}
	defer s.Close()
	// A late result dropped by the first-completion rule is logged by the
	// runner: the worker writes it down as "D key pid t" for the checker.
	drops := slog.New(dropHandler(func(key string) { logf("D %s %d %d\n", key, pid, time.Now().UnixNano()) }))
	r, err := checkpoint.Open[int, int]("faults", checkpoint.WithBackend(s), checkpoint.WithLease(lease), checkpoint.WithLogger(drops))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open runner:", err)
		return 1
	}
	defer r.Close()
	items := func(yield func(int) bool) {
		for i := range n {
			if runsKey(mode, i) && !yield(i) {
				return
			}
		}
	}
	work := func(i int) workerResult {
		logf("S %d %d %d\n", i, pid, time.Now().UnixNano())
		time.Sleep(rand.N(itemTime))
		res := workerResult{pid, rand.Int64()}
		logf("E %d %d %d %d\n", i, pid, time.Now().UnixNano(), res.Nonce)
		return res
	}
	switch mode {
	case "process":
		_, err = r.Process(ctx, iter.Seq[int](items), func(i int) int { return i },
			func(ctx context.Context, i int) (any, error) { return work(i), nil }, checkpoint.WithWorkers(16))
	default:
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() {
				for i := range r.IterateSeq(items, func(i int) int { return i }) {
					res := work(i)
					if err := r.SaveResult(i, res); err != nil {
						errs <- err
						return
					}
					logf("A %d %d %d %d\n", i, pid, time.Now().UnixNano(), res.Nonce)
				}
			})
		}
		wg.Wait()
		close(errs)
		err = <-errs
		if err == nil {
			err = r.Err()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// dropHandler is a slog.Handler that reports the keys of dropped results.
type dropHandler func(key string)

func (h dropHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h dropHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h dropHandler) WithGroup(string) slog.Handler            { return h }
func (h dropHandler) Handle(_ context.Context, rec slog.Record) error {
	if strings.HasPrefix(rec.Message, "checkpoint: result not recorded") {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "key" {
				h(a.Value.String())
			}
			return true
		})
	}
	return nil
}
