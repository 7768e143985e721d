// Command batch is the job to run first. It fetches 3,000 records from a
// simulated API with 16 workers, shows a progress bar, retries transient
// errors, and records everything in ./checkpoints. Press Ctrl-C at any time:
// the calls under way finish or are dropped cleanly, and running the same
// command again resumes where it stopped, retrying what failed.
//
//	go run ./examples/batch            # run it, then run it again
//	go run ./examples/batch -fresh     # start over
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// Record is what the simulated API returns for an id.
type Record struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Score float64 `json:"score"`
}

func main() {
	n := flag.Int("n", 3000, "number of records to fetch")
	workers := flag.Int("workers", 16, "calls in flight at once")
	dir := flag.String("dir", "checkpoints", "folder for the checkpoint files")
	fresh := flag.Bool("fresh", false, "forget earlier runs and start over")
	flag.Parse()
	log.SetFlags(0)

	// Ctrl-C or SIGTERM cancels ctx: Process stops starting calls, lets the
	// ones under way end, records what finished, and returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := []checkpoint.Option{
		checkpoint.WithDir(*dir),
		checkpoint.WithMaxAttempts(maxAttempts),
	}
	if *fresh {
		opts = append(opts, checkpoint.WithFresh())
	}
	runner, err := checkpoint.OpenBatch[int, int]("batch", opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer runner.Close()

	sum, err := runner.Process(ctx, ids(*n), func(id int) int { return id }, fetch,
		checkpoint.WithWorkers(*workers),
		checkpoint.WithRetries(3),
		checkpoint.WithBackoff(20*time.Millisecond, time.Second),
		checkpoint.WithItemTimeout(2*time.Second),
		checkpoint.WithTotal(*n),
		checkpoint.WithDescription("fetch"),
	)
	stop() // a second Ctrl-C now kills the program at once

	fmt.Printf("this run: %d fetched, %d failed, %d skipped (done before), %d retries, in %v\n",
		sum.Succeeded, sum.Failed, sum.Skipped, sum.Retries, sum.Elapsed.Round(time.Millisecond))
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Printf("stopped by a signal; %d calls under way were not recorded.\n", sum.Interrupted)
		fmt.Println("Run the same command again to resume.")
		runner.Close()
		os.Exit(130)
	case err != nil:
		log.Fatal(err)
	}

	m := runner.Meta()
	fmt.Printf("checkpoint %q in %s: %d completed, %d failed\n", m.Name, *dir, m.CompletedItems, m.FailedItems)
	failures := runner.AllErrors()
	retry := 0
	for i, f := range failures {
		if f.Attempts < maxAttempts {
			retry++
		}
		if i < 3 {
			first, _, _ := strings.Cut(f.Error, "\n") // a panic's stack follows its first line
			fmt.Printf("  id %d, attempt %d: %s\n", f.Key, f.Attempts, first)
		}
	}
	if len(failures) > 3 {
		fmt.Printf("  ... and %d more, in %s/batch_errors.jsonl\n", len(failures)-3, *dir)
	}
	switch {
	case retry > 0:
		fmt.Printf("Run again to retry %d failed records; -fresh starts over.\n", retry)
	case len(failures) > 0:
		fmt.Printf("Each failed record has failed in %d runs and is left alone; -fresh starts over.\n", maxAttempts)
	}
}

// maxAttempts is how many runs may fail on a record before it is left alone.
const maxAttempts = 3

// ids streams the record ids, as a job reading a large file would.
func ids(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for id := range n {
			if !yield(id) {
				return
			}
		}
	}
}

var (
	errNotFound    = errors.New("404 not found")
	errUnavailable = errors.New("503 service unavailable")
)

// fetch simulates a call to a remote API: 2 to 20 ms, a 503 now and then
// (retried), a few ids that do not exist, and one id that hits a bug.
func fetch(ctx context.Context, id int) (any, error) {
	select {
	case <-time.After(time.Duration(2+rand.IntN(18)) * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	switch {
	case id == 1234:
		var cache map[string]int
		cache["hit"]++ // a bug: panics with "assignment to entry in nil map"
	case id%331 == 17:
		return nil, fmt.Errorf("record %d: %w", id, errNotFound)
	case rand.IntN(100) < 5:
		return nil, checkpoint.Retryable(fmt.Errorf("record %d: %w", id, errUnavailable))
	}
	return Record{ID: id, Name: fmt.Sprintf("record-%04d", id), Score: float64(id%100) / 10}, nil
}
