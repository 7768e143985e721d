// Command crashprog is a small job built on the checkpoint library, run and
// killed with SIGKILL at random moments by the crash tests (crash_test.go and
// lock_test.go in the module root). It is not meant for people.
//
// It reports what it does on file descriptor 3, one line per event, each in
// one write and right after the library call returned:
//
//	opening | opened | work <key> | result <key> <sha256 of the result JSON> |
//	saved <key> <sha256> | failed <key> | clearing | cleared | locked | done |
//	error <text>
//
// "result" comes before the result is saved, "saved" after SaveResult
// returned. In the process mode the library saves what the work function
// returns, so only "result" comes.
//
// The test trusts nothing but these reports and the files.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// Result is what the job saves for an item. Pad makes some records large, so
// that a kill can land in the middle of writing one.
type Result struct {
	Item int    `json:"item"`
	Run  int    `json:"run"`
	Pad  string `json:"pad"`
	// A nested "timestamp" last in an object: a record cut short right
	// after it still looks framed to a lenient line parser.
	Meta struct {
		Note      string `json:"note"`
		Timestamp string `json:"timestamp"`
	} `json:"meta"`
}

type job struct {
	r        *checkpoint.Runner[string, int]
	items    []int
	run      int
	failRate int // one item in failRate fails on the first pass; 0: none
	maxPad   int
	workers  int
	clearAt  int // Clear after this many saves; 0: never
	rep      *reporter

	mu    sync.Mutex
	saves int
}

// modes are the ways of driving the runner.
var modes = map[string]func(*job) error{
	"iterate":    (*job).iterate,    // the plain loop
	"concurrent": (*job).concurrent, // a loop handing items to goroutines that save
	"process":    (*job).process,    // Runner.Process with several workers
}

func main() {
	dir := flag.String("dir", "", "checkpoint folder")
	name := flag.String("name", "job", "checkpoint name")
	mode := flag.String("mode", "iterate", "iterate, concurrent, process, meta, hold or tryopen")
	n := flag.Int("items", 2000, "number of items")
	run := flag.Int("run", 0, "run number, stored in each result")
	policy := flag.String("sync", "none", "none, always or interval")
	workers := flag.Int("workers", 8, "goroutines saving at once (concurrent and process modes)")
	failRate := flag.Int("fail", 0, "one item in this many fails on the first pass")
	maxPad := flag.Int("pad", 256<<10, "largest padding of a result, in bytes")
	clearAt := flag.Int("clear", 0, "call Clear after this many saves")
	flag.Parse()

	rep := &reporter{f: os.NewFile(3, "report")}
	if err := start(rep, *dir, *name, *mode, *n, *run, *policy, *workers, *failRate, *maxPad, *clearAt); err != nil {
		rep.say("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(2)
	}
}

func start(rep *reporter, dir, name, mode string, n, run int, policy string, workers, failRate, maxPad, clearAt int) error {
	opts := []checkpoint.Option{
		checkpoint.WithDir(dir),
		checkpoint.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))),
	}
	switch policy {
	case "none":
	case "always":
		opts = append(opts, checkpoint.WithSync(checkpoint.SyncAlways))
	case "interval":
		opts = append(opts, checkpoint.WithSync(checkpoint.SyncInterval(2*time.Millisecond)))
	default:
		return fmt.Errorf("unknown sync policy %q", policy)
	}

	switch mode {
	case "meta":
		// Open and Close over and over: nearly all the time goes into
		// rewriting the meta file, so kills land in the middle of it.
		for {
			r, err := checkpoint.Open[string, int](name, opts...)
			if err != nil {
				return err
			}
			if err := r.Close(); err != nil {
				return err
			}
		}
	case "hold":
		r, err := checkpoint.Open[string, int](name, opts...)
		if err != nil {
			return err
		}
		rep.say("opened")
		defer r.Close()
		time.Sleep(time.Hour)
		return nil
	case "tryopen":
		r, err := checkpoint.Open[string, int](name, opts...)
		if errors.Is(err, checkpoint.ErrLocked) {
			rep.say("locked")
			return nil
		}
		if err != nil {
			return err
		}
		rep.say("opened")
		return r.Close()
	}

	drive, ok := modes[mode]
	if !ok {
		return fmt.Errorf("unknown mode %q", mode)
	}
	if clearAt > 0 && mode != "iterate" {
		// With several savers a save's report can trail a Clear that
		// came after the save, and the test could not tell.
		return errors.New("-clear needs -mode iterate")
	}
	rep.say("opening")
	r, err := checkpoint.Open[string, int](name, opts...)
	if err != nil {
		return err
	}
	rep.say("opened")
	j := &job{r: r, run: run, failRate: failRate, maxPad: maxPad, workers: workers, clearAt: clearAt, rep: rep}
	for i := range n {
		j.items = append(j.items, i)
	}
	// The first pass may fail some items; the second retries them without
	// failures, so a run that ends normally has completed every item.
	if err := drive(j); err != nil {
		return err
	}
	j.failRate = 0
	if err := drive(j); err != nil {
		return err
	}
	if done, total := r.Progress(); done != n || total != n {
		return fmt.Errorf("progress %d/%d after both passes, want %d/%d", done, total, n, n)
	}
	if err := r.Close(); err != nil {
		return err
	}
	rep.say("done")
	return nil
}

func key(item int) string { return fmt.Sprintf("k%05d", item) }

func (j *job) iterate() error {
	for item := range j.r.Iterate(j.items, key) {
		if err := j.do(item); err != nil {
			return err
		}
	}
	return j.r.Err()
}

// concurrent hands the items to several goroutines that save at once.
func (j *job) concurrent() error {
	work := make(chan int)
	errs := make(chan error, j.workers)
	var wg sync.WaitGroup
	for range j.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item := range work {
				if err := j.do(item); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
loop:
	for item := range j.r.Iterate(j.items, key) {
		select {
		case work <- item:
		case err = <-errs:
			break loop
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	if err == nil {
		err = j.r.Err()
	}
	return err
}

// process lets the library's Process run the items on several workers.
func (j *job) process() error {
	items := func(yield func(int) bool) {
		for _, item := range j.items {
			if !yield(item) {
				return
			}
		}
	}
	_, err := j.r.Process(context.Background(), items, key, func(_ context.Context, item int) (any, error) {
		res, _, err := j.work(item)
		if err != nil {
			return nil, err
		}
		return res, nil
	}, checkpoint.WithWorkers(j.workers))
	return err
}

// do is the work on one item, then saving its outcome, by hand.
func (j *job) do(item int) error {
	k := key(item)
	res, sum, err := j.work(item)
	if err != nil {
		if err := j.r.SaveError(k, err); err != nil {
			return err
		}
		j.rep.say("failed %s", k)
		return nil
	}
	if err := j.r.SaveResult(k, res); err != nil {
		return err
	}
	j.rep.say("saved %s %s", k, sum)
	return j.maybeClear()
}

// work makes an item's result, with the SHA-256 of its JSON, or fails.
func (j *job) work(item int) (Result, string, error) {
	k := key(item)
	j.rep.say("work %s", k)
	h := hash(k, j.run)
	if j.failRate > 0 && h%uint64(j.failRate) == 0 {
		return Result{}, "", fmt.Errorf("item %d failed in run %d", item, j.run)
	}
	res := Result{Item: item, Run: j.run}
	pad := int(h>>8) % 64
	if h%10 == 0 {
		pad = int(h>>8) % (j.maxPad + 1)
	}
	res.Pad = strings.Repeat(string(rune('a'+h%26)), pad)
	res.Meta.Note = "n"
	res.Meta.Timestamp = "t"
	b, err := json.Marshal(res)
	if err != nil {
		return Result{}, "", err
	}
	digest := sha256.Sum256(b)
	sum := hex.EncodeToString(digest[:])
	j.rep.say("result %s %s", k, sum)
	return res, sum, nil
}

func (j *job) maybeClear() error {
	if j.clearAt == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.saves++
	if j.saves != j.clearAt {
		return nil
	}
	j.rep.say("clearing")
	if err := j.r.Clear(); err != nil {
		return err
	}
	j.rep.say("cleared")
	return nil
}

func hash(k string, run int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", k, run)
	return h.Sum64()
}

// reporter writes one report line per write call, so lines from several
// goroutines never interleave.
type reporter struct {
	mu sync.Mutex
	f  *os.File
}

func (r *reporter) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.f, format+"\n", args...)
}
