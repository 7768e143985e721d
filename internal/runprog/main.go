// Command runprog is a small job for the run-history tests (runs_test.go in
// the module root): it opens a checkpoint with parameters, saves a given
// number of results and errors, logs a metric, prints "ready" and waits to
// be killed with SIGKILL. It is not meant for people.
//
//	runprog DIR NAME RESULTS ERRORS
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "runprog:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: runprog DIR NAME RESULTS ERRORS")
	}
	results, err1 := strconv.Atoi(args[2])
	failures, err2 := strconv.Atoi(args[3])
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	r, err := checkpoint.Open[int, int](args[1], checkpoint.WithDir(args[0]),
		checkpoint.WithParams(map[string]any{"model": "crashy", "results": results}),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	next := 0
	for range results {
		for r.IsCompleted(next) {
			next++
		}
		if err := r.SaveResult(next, map[string]int{"item": next}); err != nil {
			return err
		}
		next++
	}
	for i := range failures {
		if err := r.SaveError(1_000_000+i, errors.New("boom")); err != nil {
			return err
		}
	}
	if err := r.LogMetrics(map[string]float64{"saved": float64(results)}, checkpoint.AtStep(1)); err != nil {
		return err
	}
	fmt.Println("ready")
	time.Sleep(time.Minute) // the test kills us long before
	return errors.New("not killed")
}
