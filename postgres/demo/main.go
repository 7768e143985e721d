// Command demo is one machine of a job shared through Postgres: run it on
// as many machines as you like with the same -db and the same items. See
// run.sh, which starts a local Postgres and three of these.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/checkpoint-go/checkpoint/postgres"
)

func main() {
	db := flag.String("db", os.Getenv("CHECKPOINT_DB"), "Postgres connection string")
	n := flag.Int("items", 3000, "items of the job")
	flag.Parse()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	store, err := postgres.Open(ctx, *db, postgres.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer store.Close()
	runner, err := checkpoint.Open[int, int]("demo", checkpoint.WithBackend(store),
		checkpoint.WithLease(10*time.Second), checkpoint.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer runner.Close()

	items := func(yield func(int) bool) {
		for i := range *n {
			if !yield(i) {
				return
			}
		}
	}
	sum, err := runner.Process(ctx, items, func(i int) int { return i },
		func(ctx context.Context, i int) (any, error) {
			time.Sleep(5 * time.Millisecond) // the work
			return i * i, nil
		}, checkpoint.WithWorkers(8))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	done, _ := runner.Progress()
	fmt.Printf("worker %d: did %d items, skipped %d (done elsewhere), in %v; %d completed in all\n",
		os.Getpid(), sum.Succeeded, sum.Skipped, sum.Elapsed.Round(time.Millisecond), done)
}
