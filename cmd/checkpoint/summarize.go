package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newSummarizeCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "summarize NAME FIELD",
		Short: "Count, mean, min, max and percentiles of a number in the results",
		Long: `summarize reads the latest result of every completed key of a checkpoint
and prints the count, mean, minimum, p50, p90, p99 and maximum of the number
at FIELD: a path of object fields and array indexes separated by dots, as in
jq (".score", "usage.total_tokens", ".scores.0"; "." is the result itself).
Results without a number there (the field is absent, null or not a number)
are counted as missing.

NAME is a name in --dir, or a DIR/NAME path. summarize streams the results
from disk (it holds the numbers, not the results) and takes no lock: it is
safe while a job runs.`,
		Example: `  checkpoint summarize eval .score
  checkpoint summarize runs/model-b/eval usage.total_tokens
  checkpoint summarize eval .latency_ms --json | jq .p99`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := e.ref(args[0])
			if err != nil {
				return err
			}
			s, err := checkpoint.Summarize(cmd.Context(), ref, args[1])
			switch {
			case errors.Is(err, checkpoint.ErrNoCheckpoint):
				return fmt.Errorf("%w (checkpoint ls --dir %s lists them)", err, ref.Dir)
			case errors.Is(err, checkpoint.ErrBadField):
				return usageError{err}
			case err != nil:
				return err
			}
			if asJSON {
				out := newJSONLines(e.stdout)
				if err := out.put(s); err != nil {
					return err
				}
				return out.flush()
			}
			return printSummary(e, args[0], s)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the figures as one JSON object")
	return cmd
}

// printSummary writes the figures for people: a line that says what was
// read, then one figure a line, the numbers aligned on the right.
func printSummary(e *env, name string, s *checkpoint.FieldStats) error {
	w := bufio.NewWriter(e.stdout)
	fmt.Fprintf(w, "%s: %s in %d results", name, s.Field, s.Count+s.Missing)
	if s.Missing > 0 {
		fmt.Fprintf(w, " (%d without a number there)", s.Missing)
	}
	fmt.Fprintln(w)
	if s.Count == 0 {
		fmt.Fprintln(w, "  no numbers")
		return w.Flush()
	}
	num := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	rows := []struct{ label, value string }{
		{"count", strconv.Itoa(s.Count)},
		{"mean", num(s.Mean)},
		{"min", num(s.Min)},
		{"p50", num(s.P50)},
		{"p90", num(s.P90)},
		{"p99", num(s.P99)},
		{"max", num(s.Max)},
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.value))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-5s  %*s\n", r.label, width, r.value)
	}
	return w.Flush()
}
