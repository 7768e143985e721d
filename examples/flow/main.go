// Command flow is the README's example of a Flow: three steps over a small
// state, saved after each step, with a large artifact handed from the first
// step to the second through snapshots.
//
// The "clean" step fails when -fail is given (or FLOW_FAIL=1). Run it once
// with -fail, then again without: the second run skips "download", loads the
// artifact it saved from disk, and resumes at "clean" with exactly the state
// "download" left.
//
//	go run ./examples/flow -fail     # download runs, clean fails
//	go run ./examples/flow           # download skipped, clean and train run
//	go run ./examples/flow           # finished: nothing runs
//	go run ./examples/flow -restart  # everything again
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// State is what the steps share. It stays small; the data set is a snapshot.
type State struct {
	Source string  `json:"source"`
	Rows   int     `json:"rows"`
	Kept   int     `json:"kept"`
	Mean   float64 `json:"mean"`
	Model  string  `json:"model"`
}

func main() {
	dir := flag.String("dir", "checkpoints", "folder for the flow's files")
	fail := flag.Bool("fail", os.Getenv("FLOW_FAIL") == "1", `make the "clean" step fail`)
	restart := flag.Bool("restart", false, "start again from the first step")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dir, *fail, *restart); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string, fail, restart bool) error {
	// Notices (which step a run resumes at) go to stderr, without times.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	flow, err := checkpoint.NewFlow[State]("example", checkpoint.WithDir(dir), checkpoint.WithLogger(log))
	if err != nil {
		return err
	}
	defer flow.Close()
	snaps := flow.Snapshots()

	flow.Step("download", func(ctx context.Context, s *State) error {
		// A large artifact goes to a snapshot, streamed: visible only once
		// Close has it safely on disk.
		w, err := snaps.Create("dataset.csv")
		if err != nil {
			return err
		}
		defer w.Abort()
		bw := bufio.NewWriter(w)
		for i := range 200_000 {
			fmt.Fprintf(bw, "%d,%d\n", i, (i*7919)%1000)
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		s.Source, s.Rows = "dataset.csv", 200_000
		fmt.Printf("  download: ran, saved %d rows to snapshot %q\n", s.Rows, s.Source)
		return nil
	})
	flow.Step("clean", func(ctx context.Context, s *State) error {
		s.Kept = -1 // a half-done change: a failure must not keep it
		if fail {
			return errors.New("the parser chokes on row 1234 (run again without -fail)")
		}
		// On a resumed run, "download" did not run in this process: the
		// artifact comes from the snapshot it saved.
		r, err := snaps.Open(s.Source)
		if err != nil {
			return err
		}
		defer r.Close()
		kept, sum := 0, 0
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			_, v, _ := strings.Cut(sc.Text(), ",")
			n, err := strconv.Atoi(v)
			if err != nil {
				return err
			}
			if n >= 100 {
				kept++
				sum += n
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		s.Kept, s.Mean = kept, float64(sum)/float64(kept)
		fmt.Printf("  clean: ran, loaded snapshot %q, kept %d of %d rows\n", s.Source, s.Kept, s.Rows)
		return nil
	})
	flow.Step("train", func(ctx context.Context, s *State) error {
		s.Model = fmt.Sprintf("mean=%.2f over %d rows", s.Mean, s.Kept)
		fmt.Printf("  train: ran, model %s\n", s.Model)
		return nil
	})

	doneBefore := map[string]bool{}
	for _, st := range flow.Steps() {
		doneBefore[st.Name] = st.Status == checkpoint.StepDone
	}
	var opts []checkpoint.RunOption
	if restart {
		opts = append(opts, checkpoint.Restart())
		clear(doneBefore)
	}
	fmt.Println("run:")
	final, runErr := flow.Run(ctx, State{}, opts...)

	fmt.Println("steps:")
	for _, st := range flow.Steps() {
		what := st.Status
		if doneBefore[st.Name] {
			what = "skipped (done in an earlier run)"
		} else if st.Status == checkpoint.StepDone {
			what = fmt.Sprintf("done in %v", st.Duration.Round(time.Millisecond))
		}
		fmt.Printf("  %-8s attempts=%d  %s\n", st.Name, st.Attempts, what)
	}
	if runErr != nil {
		before, err := flow.StateBefore("clean")
		if err == nil {
			fmt.Printf("state saved before clean: %+v\n", before)
		}
		return runErr
	}
	fmt.Printf("final state: %+v\n", final)
	return nil
}
