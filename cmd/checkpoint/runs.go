package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newRunsCmd(e *env) *cobra.Command {
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "runs NAME",
		Short: "List a checkpoint's runs, newest first, with params and final metrics",
		Long: `runs prints the run history of a checkpoint: every Open of it by the Go
library started a run, recorded in NAME_runs.jsonl. For each run, newest
first: its id, how it ended (finished when Close was called, crashed when the
process died; running while it lives), when it started and how long it ran,
the results and errors it saved, its rate, its parameters (WithParams) and the
last value of each metric it logged (LogMetrics). The counts of a crashed run
come from the lines it left in the journals. runs takes no lock.`,
		Example: `  checkpoint runs eval
  checkpoint runs eval --limit 5
  checkpoint runs eval --json | jq 'select(.status == "crashed")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit is %d, want 0 (all) or more", limit)
			}
			ref, err := e.ref(args[0])
			if err != nil {
				return err
			}
			runs, err := checkpoint.ReadRuns(ref.Dir, ref.Name)
			if err != nil {
				return err
			}
			if len(runs) == 0 {
				if _, err := e.inspectRef(ref); err != nil {
					return err
				}
			}
			slices.Reverse(runs)
			if limit > 0 && len(runs) > limit {
				runs = runs[:limit]
			}
			if asJSON {
				out := newJSONLines(e.stdout)
				for _, r := range runs {
					if err := out.put(r); err != nil {
						return err
					}
				}
				return out.flush()
			}
			if len(runs) == 0 {
				fmt.Fprintf(e.stdout, "%s has no recorded runs (runs are recorded by the Go library's Open)\n", ref)
				return nil
			}
			return printRuns(e, runs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per run, newest first")
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the latest N runs (0: all)")
	return cmd
}

// inspectRef checks that ref is a checkpoint, for a clear error.
func (e *env) inspectRef(ref checkpoint.Ref) (bool, error) {
	v, err := checkpoint.Inspect(ref.Dir, ref.Name)
	if err != nil {
		return false, fmt.Errorf("%w (checkpoint ls --dir %s lists them)", err, ref.Dir)
	}
	return true, v.Close()
}

func printRuns(e *env, runs []checkpoint.Run) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATUS\tSTARTED\tTOOK\tCOMPLETED\tFAILED\tRATE\tPARAMS\tMETRICS")
	now := time.Now()
	for _, r := range runs {
		took := "-"
		switch {
		case !r.End.IsZero():
			took = humanDuration(r.End.Sub(r.Start))
		case r.Status == checkpoint.RunRunning:
			took = humanDuration(now.Sub(r.Start)) + "+"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n",
			r.ID, r.Status, r.Start.Local().Format("2006-01-02 15:04:05"), took,
			r.Completed, r.Failed, fmt.Sprintf("%.1f/s", r.Rate), shownParams(r.Params), shownMetrics(r.Metrics))
	}
	return tw.Flush()
}

// shownParams is the params on one line: compact JSON of an object without
// its braces.
func shownParams(p json.RawMessage) string {
	if len(p) == 0 {
		return "-"
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(p, &m) != nil {
		return shownValue(p)
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+shownValue(m[k]))
	}
	return strings.Join(parts, " ")
}

func shownMetrics(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		parts = append(parts, fmt.Sprintf("%s=%s", k, shownFloat(&v)))
	}
	return strings.Join(parts, " ")
}
