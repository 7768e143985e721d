package main

import (
	"fmt"
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
removes). It never takes the lock.`,
		Example: `  checkpoint status sample --dir checkpoints
  checkpoint status sample --max-attempts 3    # also count keys out of attempts
  checkpoint status sample --json | jq .completed`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxAttempts < 0 {
				return usagef("--max-attempts is %d, want 1 or more", maxAttempts)
			}
			v, err := e.inspect(args[0])
			if err != nil {
				return err
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
	if in.Total > 0 {
		fmt.Fprintf(w, "  completed    %d of %d (%.1f%%)\n", in.Completed, in.Total, 100*float64(in.Completed)/float64(in.Total))
	} else {
		fmt.Fprintf(w, "  completed    %d (total not known)\n", in.Completed)
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
	if hint {
		fmt.Fprintf(w, "  hint         checkpoint compact %s --dir %s would drop the superseded lines\n", in.Name, e.dir)
	}
}
