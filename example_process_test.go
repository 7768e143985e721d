package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/checkpoint-go/checkpoint"
)

// Process runs a function on many items at once and records every outcome.
// Transient errors marked Retryable are retried within the run, other errors
// and panics are recorded as failures, and the next run skips what is done.
func ExampleRunner_Process() {
	dir, err := os.MkdirTemp("", "checkpoint-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	runner, err := checkpoint.Open[string, string]("squares", checkpoint.WithDir(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer runner.Close()

	var calls atomic.Int32
	square := func(ctx context.Context, s string) (any, error) {
		switch {
		case s == "7" && calls.Add(1) == 1:
			return nil, checkpoint.Retryable(errors.New("busy, try again")) // retried
		case s == "13":
			return nil, errors.New("unlucky") // recorded as a failure
		case s == "21":
			panic("a bug") // recorded as a failure, with its stack
		}
		var n int
		fmt.Sscan(s, &n)
		return n * n, nil
	}
	var items []string
	for i := range 25 {
		items = append(items, fmt.Sprint(i))
	}
	id := func(s string) string { return s }

	sum, err := runner.Process(context.Background(), slices.Values(items), id, square,
		checkpoint.WithWorkers(4), checkpoint.WithRetries(2))
	if err != nil {
		log.Fatal(err) // the checkpoint failed, or ctx ended
	}
	fmt.Printf("processed %d: %d succeeded, %d failed, %d retries\n", sum.Processed, sum.Succeeded, sum.Failed, sum.Retries)

	var seven int
	runner.Result("7", &seven)
	fmt.Println("7 squared is", seven)
	failures := runner.AllErrors()
	slices.SortFunc(failures, func(a, b checkpoint.Failure[string]) int { return strings.Compare(a.Key, b.Key) })
	for _, f := range failures {
		first, _, _ := strings.Cut(f.Error, "\n")
		fmt.Printf("%s failed: %s\n", f.Key, first)
	}

	// The next run only retries the two failures.
	sum, _ = runner.Process(context.Background(), slices.Values(items), id, square)
	fmt.Printf("next run: %d skipped, %d processed\n", sum.Skipped, sum.Processed)
	// Output:
	// processed 25: 23 succeeded, 2 failed, 1 retries
	// 7 squared is 49
	// 13 failed: unlucky
	// 21 failed: panic: a bug
	// next run: 23 skipped, 2 processed
}
