package checkpoint_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/checkpoint-go/checkpoint"
)

// A cached function: the second Get of a key, in this run or a later one,
// makes no call.
func ExampleCached() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	calls := 0
	upper := func(ctx context.Context, s string) (string, error) {
		calls++ // stands for a slow, paid call
		return strings.ToUpper(s), nil
	}
	for run := 1; run <= 2; run++ {
		c, err := checkpoint.Cached("upper", upper, checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			log.Fatal(err)
		}
		a, _ := c.Get(context.Background(), "hello")
		b, _ := c.Get(context.Background(), "hello")
		fmt.Printf("run %d: %s %s, %d calls so far\n", run, a, b, calls)
		c.Close()
	}
	// Output:
	// run 1: HELLO HELLO, 1 calls so far
	// run 2: HELLO HELLO, 1 calls so far
}

// Two steps of a pipeline: step 2 runs over step 1's results.
func ExampleOpenPipeline() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	p, err := checkpoint.OpenPipeline[int]("nums", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	square, _ := checkpoint.PipelineStep[int, int](p, "square")
	label, _ := checkpoint.PipelineStep[int, int](p, "label")
	for i := range square.Iterate([]int{1, 2, 3}, func(i int) int { return i }) {
		square.SaveResult(i, i*i)
	}
	for k, raw := range square.AllResults() {
		label.SaveResult(k, "square is "+string(raw))
	}
	sum, _ := p.Summary()
	for _, s := range sum {
		fmt.Printf("%s: %d completed\n", s.Step, s.Completed)
	}
	// Output:
	// square: 3 completed
	// label: 3 completed
}
