// Command runprog is a small job for the run-history tests (runs_test.go and
// runs_flow_test.go in the module root): it opens a checkpoint with
// parameters, saves a given number of results and errors, logs a metric,
// prints "ready" and waits to be killed with SIGKILL. It is not meant for
// people.
//
//	runprog DIR NAME RESULTS ERRORS
//	runprog pipeline DIR NAME RESULTS ERRORS   (steps fetch: RESULTS and ERRORS; parse: RESULTS)
//	runprog flow DIR NAME                      (steps one and two succeed, three fails)
package main

import (
	"context"
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
	if len(args) > 0 && args[0] == "pipeline" {
		return runPipeline(args[1:])
	}
	if len(args) > 0 && args[0] == "flow" {
		return runFlow(args[1:])
	}
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

func runPipeline(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: runprog pipeline DIR NAME RESULTS ERRORS")
	}
	results, err1 := strconv.Atoi(args[2])
	failures, err2 := strconv.Atoi(args[3])
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	p, err := checkpoint.OpenPipeline[int](args[1], checkpoint.WithDir(args[0]),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	fetch, err := checkpoint.PipelineStep[int, int](p, "fetch")
	if err != nil {
		return err
	}
	parse, err := checkpoint.PipelineStep[int, int](p, "parse")
	if err != nil {
		return err
	}
	for k := range results {
		if err := errors.Join(fetch.SaveResult(k, k), parse.SaveResult(k, 2*k)); err != nil {
			return err
		}
	}
	for k := range failures {
		if err := fetch.SaveError(results+k, errors.New("boom")); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Minute) // the test kills us long before
	return errors.New("not killed")
}

func runFlow(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: runprog flow DIR NAME")
	}
	f, err := checkpoint.NewFlow[int](args[1], checkpoint.WithDir(args[0]),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	f.Step("one", func(_ context.Context, n *int) error { *n++; return nil })
	f.Step("two", func(_ context.Context, n *int) error { *n++; return nil })
	f.Step("three", func(context.Context, *int) error { return errors.New("boom") })
	if _, err := f.Run(context.Background(), 0); err == nil {
		return errors.New("step three did not fail")
	}
	fmt.Println("ready")
	time.Sleep(time.Minute) // the test kills us long before
	return errors.New("not killed")
}
