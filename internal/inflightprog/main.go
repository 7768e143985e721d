// Command inflightprog is a two-step pipeline job, run and killed with
// SIGKILL by the in-flight crash tests (inflight_crash_test.go in the module
// root). It is not meant for people.
//
// Step "fetch" runs Process over the items 0..n-1 (value: item*10); step
// "score" iterates, with in-flight tracking, over fetch's results and saves
// value+1. With -poison p, the process SIGKILLs itself when fetch reaches
// item p: an item that kills its process every time.
//
// It reports on file descriptor 3, one line per event, each in one write:
//
//	crashed <step> <key>  (a key Open found in flight, after the last run died)
//	saved score <key>     (after SaveResult returned)
//	done                  (both steps ran to the end)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

func main() {
	dir := flag.String("dir", "", "checkpoint folder")
	n := flag.Int("n", 100, "items")
	poison := flag.Int("poison", -1, "item that kills the process (-1: none)")
	workers := flag.Int("workers", 4, "Process workers")
	delay := flag.Duration("delay", 0, "work time per item")
	maxCrashes := flag.Int("max-crashes", 3, "WithMaxCrashes")
	flag.Parse()
	rep := os.NewFile(3, "report")
	if err := run(*dir, *n, *poison, *workers, *maxCrashes, *delay, rep); err != nil {
		fmt.Fprintln(os.Stderr, "inflightprog:", err)
		os.Exit(1)
	}
}

func report(w *os.File, format string, args ...any) {
	if w != nil {
		w.Write(fmt.Appendf(nil, format+"\n", args...)) // one write: whole lines
	}
}

func run(dir string, n, poison, workers, maxCrashes int, delay time.Duration, rep *os.File) error {
	log := slog.New(slog.DiscardHandler)
	p, err := checkpoint.OpenPipeline[int]("job", checkpoint.WithDir(dir), checkpoint.WithLogger(log),
		checkpoint.WithInFlightIterate(), checkpoint.WithMaxCrashes(maxCrashes))
	if err != nil {
		return err
	}
	defer p.Close()
	fetch, err := checkpoint.PipelineStep[int, int](p, "fetch")
	if err != nil {
		return err
	}
	score, err := checkpoint.PipelineStep[int, int](p, "score")
	if err != nil {
		return err
	}
	for _, c := range fetch.Crashed() {
		report(rep, "crashed fetch %d", c.Key)
	}
	for _, c := range score.Crashed() {
		report(rep, "crashed score %d", c.Key)
	}
	items := func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
	_, err = fetch.Process(context.Background(), iter.Seq[int](items), func(i int) int { return i },
		func(ctx context.Context, i int) (any, error) {
			if i == poison {
				killSelf()
				time.Sleep(time.Hour)
			}
			if delay > 0 {
				time.Sleep(delay)
			}
			return i * 10, nil
		}, checkpoint.WithWorkers(workers))
	if err != nil {
		return err
	}
	// Step 2 over step 1's results.
	type pair struct{ key, value int }
	var in []pair
	for k, raw := range fetch.AllResults() {
		var v int
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		in = append(in, pair{k, v})
	}
	if err := fetch.Err(); err != nil {
		return err
	}
	keys := make([]int, len(in))
	vals := make(map[int]int, len(in))
	for i, it := range in {
		keys[i] = it.key
		vals[it.key] = it.value
	}
	for k := range score.Iterate(keys, func(k int) int { return k }) {
		if delay > 0 {
			time.Sleep(delay)
		}
		if err := score.SaveResult(k, vals[k]+1); err != nil {
			return err
		}
		report(rep, "saved score %d", k)
	}
	if err := score.Err(); err != nil {
		return err
	}
	if err := p.Close(); err != nil {
		return err
	}
	report(rep, "done")
	return nil
}
