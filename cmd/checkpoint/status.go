package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

type statusJSON struct {
	Name          string      `json:"name"`
	Completed     int         `json:"completed"`
	Failed        int         `json:"failed"`
	OutOfAttempts *int        `json:"out_of_attempts,omitempty"`
	Total         int         `json:"total"`
	StartedAt     jsonTime    `json:"started_at"`
	LastUpdated   jsonTime    `json:"last_updated"`
	Running       bool        `json:"running"`
	Rate          float64     `json:"rate"` // records per second over the last minute
	ETASeconds    *float64    `json:"eta_seconds,omitempty"`
	Size          int64       `json:"size"`
	Results       journalJSON `json:"results"`
	Errors        journalJSON `json:"errors"`
	SideFiles     []string    `json:"side_files"`
	// In flight and crashes (checkpoint.ReadInFlight): keys marked in flight
	// now (or when the last run died), and keys a dead run had in flight.
	InFlight []json.RawMessage `json:"in_flight"`
	Crashes  []crashJSON       `json:"crashes"`
	// Steps of a flow of the same name, if there is one.
	Steps []checkpoint.StepStatus `json:"steps,omitempty"`
}

type crashJSON struct {
	Key     json.RawMessage `json:"key"`
	Crashes int             `json:"crashes"`
	GaveUp  bool            `json:"gave_up"`
}

// flowStatusJSON is status --json for a flow that has no checkpoint of its
// own name.
type flowStatusJSON struct {
	Name  string                  `json:"name"`
	Kind  string                  `json:"kind"` // "flow"
	Steps []checkpoint.StepStatus `json:"steps"`
}

type journalJSON struct {
	Records    int   `json:"records"`
	Superseded int   `json:"superseded"`
	Bytes      int64 `json:"bytes"`
}

func newStatusCmd(e *env) *cobra.Command {
	var asJSON bool
	var maxAttempts int
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show where a checkpoint stands",
		Long: `status prints a checkpoint's counts, its total items when known, when it
started and was last updated, the rate of records over the last minute and
an ETA while a job runs, whether a job holds its lock, side files left by
repairs, and how much of each file is superseded lines (which compact
removes). For a flow it lists the steps; for a pipeline, each step's counts
(each step is a checkpoint NAME.STEP). It never takes the lock.`,
		Example: `  checkpoint status sample --dir checkpoints
  checkpoint status sample --max-attempts 3    # also count keys out of attempts
  checkpoint status sample --json | jq .completed
  checkpoint status docs                       # a pipeline: one row per step`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxAttempts < 0 {
				return usagef("--max-attempts is %d, want 1 or more", maxAttempts)
			}
			if e.db != "" {
				return e.statusPostgres(cmd.Context(), args[0], asJSON, maxAttempts) // source_pg.go
			}
			steps, ferr := checkpoint.ReadFlowSteps(e.dir, args[0])
			isFlow := ferr == nil
			if ferr != nil && !errors.Is(ferr, fs.ErrNotExist) {
				return ferr
			}
			v, err := checkpoint.Inspect(e.dir, args[0])
			if isFlow && errors.Is(err, checkpoint.ErrNoCheckpoint) {
				return printFlowOnly(e, args[0], steps, asJSON)
			}
			if errors.Is(err, checkpoint.ErrNoCheckpoint) {
				if pipe, perr := checkpoint.ReadPipelineSteps(e.dir, args[0]); perr == nil {
					return printPipeline(e, args[0], pipe, asJSON)
				}
			}
			if err != nil {
				return e.explain(args[0], err)
			}
			defer v.Close()
			in := v.Info()
			s := statusJSON{
				Name: in.Name, Completed: in.Completed, Failed: in.Failed, Total: in.Total,
				StartedAt: jsonTime(in.StartedAt), LastUpdated: jsonTime(in.LastUpdated),
				Running: in.Running, Rate: in.Rate, Size: in.Size,
				Results:   journalJSON{in.Results.Records, in.Results.Superseded, in.Results.Size},
				Errors:    journalJSON{in.Errors.Records, in.Errors.Superseded, in.Errors.Size},
				SideFiles: in.SideFiles,
			}
			if s.SideFiles == nil {
				s.SideFiles = []string{}
			}
			fl, err := checkpoint.ReadInFlight(e.dir, args[0])
			if err != nil {
				return err
			}
			s.InFlight = fl.InFlight
			if s.InFlight == nil {
				s.InFlight = []json.RawMessage{}
			}
			s.Crashes = []crashJSON{}
			for _, c := range fl.Crashes {
				s.Crashes = append(s.Crashes, crashJSON{c.Key, c.Crashes, c.GaveUp})
			}
			s.Steps = steps
			if maxAttempts > 0 {
				n := 0
				for f := range v.Failures() {
					if f.Attempts >= maxAttempts {
						n++
					}
				}
				if err := v.Err(); err != nil {
					return err
				}
				s.OutOfAttempts = &n
			}
			if left := in.Total - in.Completed - in.Failed; in.Running && in.Total > 0 && in.Rate > 0 && left > 0 {
				eta := float64(left) / in.Rate
				s.ETASeconds = &eta
			}
			if asJSON {
				out := newJSONLines(e.stdout)
				out.put(s)
				return out.flush()
			}
			printStatus(e, in, s)
			if isFlow {
				fmt.Fprintf(e.stdout, "\nflow %s\n", in.Name)
				return writeFlowStatus(e.stdout, steps)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object: name, completed, failed, total, started_at, last_updated, running, rate, ...")
	cmd.Flags().IntVar(&maxAttempts, "max-attempts", 0, "the job's WithMaxAttempts, to count failed keys out of attempts")
	return cmd
}

func printStatus(e *env, in checkpoint.Info, s statusJSON) {
	w := e.stdout
	now := time.Now()
	fmt.Fprintf(w, "%s (in %s)\n", in.Name, e.dir)
	if in.Total > 0 && in.Total >= in.Completed+in.Failed {
		fmt.Fprintf(w, "  completed    %d of %d (%.1f%%)\n", in.Completed, in.Total, 100*float64(in.Completed)/float64(in.Total))
	} else {
		fmt.Fprintf(w, "  completed    %d (total not known yet)\n", in.Completed)
	}
	fmt.Fprintf(w, "  failed       %d", in.Failed)
	if s.OutOfAttempts != nil {
		fmt.Fprintf(w, " (%d out of attempts)", *s.OutOfAttempts)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  started      %s\n", humanTime(in.StartedAt, now))
	fmt.Fprintf(w, "  last update  %s\n", humanTime(in.LastUpdated, now))
	if in.Running {
		fmt.Fprintf(w, "  running      yes (a job holds the lock)\n")
		fmt.Fprintf(w, "  rate         %.1f records/s over the last minute\n", in.Rate)
		if s.ETASeconds != nil {
			fmt.Fprintf(w, "  eta          %s\n", humanDuration(time.Duration(*s.ETASeconds*float64(time.Second))))
		}
	} else {
		fmt.Fprintf(w, "  running      no\n")
	}
	fmt.Fprintf(w, "  size         %s\n", humanSize(in.Size))
	hint := false
	for _, j := range []struct {
		label string
		ji    checkpoint.JournalInfo
	}{{"results", in.Results}, {"errors", in.Errors}} {
		share := 0.0
		if j.ji.Records > 0 {
			share = 100 * float64(j.ji.Superseded) / float64(j.ji.Records)
		}
		fmt.Fprintf(w, "  %-12s %d records, %d superseded (%.0f%%), %s\n", j.label, j.ji.Records, j.ji.Superseded, share, humanSize(j.ji.Size))
		hint = hint || (j.ji.Superseded > 0 && share >= 25)
	}
	for _, p := range in.SideFiles {
		fmt.Fprintf(w, "  side file    %s (bytes set aside by a repair)\n", relPath(e.dir, p))
	}
	if len(s.InFlight) > 0 {
		what := "being worked on now"
		if !in.Running {
			what = "when the last run died (no run since)"
		}
		fmt.Fprintf(w, "  in flight    %d keys %s: %s\n", len(s.InFlight), what, shownKeys(s.InFlight))
	}
	for _, c := range s.Crashes {
		gave := ""
		if c.GaveUp {
			gave = ", given up (recorded as failed)"
		}
		noun := "crashes"
		if c.Crashes == 1 {
			noun = "crash"
		}
		fmt.Fprintf(w, "  crashed      key %s: %d %s%s\n", keyShown(string(c.Key)), c.Crashes, noun, gave)
	}
	if hint {
		fmt.Fprintf(w, "  hint         checkpoint compact %s --dir %s would drop the superseded lines\n", in.Name, e.dir)
	}
}

// shownKeys lists keys as people type them, at most ten.
func shownKeys(keys []json.RawMessage) string {
	out := ""
	for i, k := range keys {
		if i == 10 {
			return out + fmt.Sprintf(", ... (%d more)", len(keys)-10)
		}
		if i > 0 {
			out += ", "
		}
		out += keyShown(string(k))
	}
	return out
}

// printFlowOnly is status for a flow without a checkpoint of its name.
func printFlowOnly(e *env, name string, steps []checkpoint.StepStatus, asJSON bool) error {
	if asJSON {
		if steps == nil {
			steps = []checkpoint.StepStatus{}
		}
		out := newJSONLines(e.stdout)
		out.put(flowStatusJSON{Name: name, Kind: "flow", Steps: steps})
		return out.flush()
	}
	fmt.Fprintf(e.stdout, "flow %s (in %s)\n", name, e.dir)
	return writeFlowStatus(e.stdout, steps)
}
