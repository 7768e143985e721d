package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newCompareCmd(e *env) *cobra.Command {
	var asJSON, failOnDiff bool
	var tolerance float64
	var examples int
	cmd := &cobra.Command{
		Use:   "compare A B",
		Short: "Compare two checkpoints: keys, outcomes, results, params, metrics",
		Long: `compare reads two checkpoints (say the same evaluation run with model A and
with model B) and reports the keys only in one, the keys that completed in one
and failed in the other (with the error), and, for keys completed in both,
how many results are equal and, field by field, how many differ, with a few
examples. It also shows the parameters of each one's latest run side by side
and the latest value of each metric with the change from A to B.

A and B are names in --dir, or DIR/NAME paths, so the two may live in
different folders. Numbers compare within --tolerance. compare streams the
results from disk and takes no lock: it is safe while a job runs.

Exit status: 0 whether or not they differ; with --fail-on-diff, 1 if keys,
outcomes or results differ (for CI).`,
		Example: `  checkpoint compare model-a model-b
  checkpoint compare runs/a/eval runs/b/eval --tolerance 1e-6
  checkpoint compare eval-main eval-pr --fail-on-diff      # exit 1 when they differ
  checkpoint compare model-a model-b --json | jq .fields`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tolerance < 0 {
				return usagef("--tolerance is %v, want 0 or more", tolerance)
			}
			if examples < 0 {
				return usagef("--examples is %d, want 0 or more", examples)
			}
			a, err := e.ref(args[0])
			if err != nil {
				return err
			}
			b, err := e.ref(args[1])
			if err != nil {
				return err
			}
			c, err := checkpoint.Compare(cmd.Context(), a, b,
				checkpoint.WithTolerance(tolerance), checkpoint.WithExamples(examples))
			if errors.Is(err, checkpoint.ErrNoCheckpoint) {
				return fmt.Errorf("%w (checkpoint ls --dir DIR lists them)", err)
			}
			if err != nil {
				return err
			}
			if asJSON {
				out := newJSONLines(e.stdout)
				if err := out.put(c); err != nil {
					return err
				}
				if err := out.flush(); err != nil {
					return err
				}
			} else if err := printComparison(e.stdout, c); err != nil {
				return err
			}
			if failOnDiff && c.Differs() {
				return errors.New("the checkpoints differ (--fail-on-diff)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the comparison as one JSON object")
	cmd.Flags().BoolVar(&failOnDiff, "fail-on-diff", false, "exit with status 1 if keys, outcomes or results differ")
	cmd.Flags().Float64Var(&tolerance, "tolerance", 0, "numbers that differ by at most this much are equal")
	cmd.Flags().IntVar(&examples, "examples", 3, "example keys to show per category and per field")
	return cmd
}

// ref reads a checkpoint argument: a name in --dir, or DIR/NAME. A path to
// one of its files (DIR/NAME_results.jsonl) names it too.
func (e *env) ref(arg string) (checkpoint.Ref, error) {
	if arg == "" {
		return checkpoint.Ref{}, usagef("empty checkpoint name")
	}
	if !strings.ContainsAny(arg, `/`+string(filepath.Separator)) {
		return checkpoint.Ref{Dir: e.dir, Name: arg}, nil
	}
	dir, name := filepath.Dir(arg), filepath.Base(arg)
	for _, suffix := range []string{"_results.jsonl", "_errors.jsonl", "_meta.json", "_runs.jsonl", "_metrics.jsonl"} {
		if n, ok := strings.CutSuffix(name, suffix); ok && n != "" {
			name = n
			break
		}
	}
	return checkpoint.Ref{Dir: dir, Name: name}, nil
}

// printComparison writes the comparison for people.
func printComparison(w io.Writer, c *checkpoint.Comparison) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	row := func(label string, n int, detail string) { p("  %-29s %7d%s\n", label, n, detail) }
	for _, s := range []struct {
		label string
		side  checkpoint.Side
	}{{"A", c.A}, {"B", c.B}} {
		p("%s: %s: %d completed, %d failed", s.label, s.side.Ref, s.side.Completed, s.side.Failed)
		if r := s.side.Run; r != nil {
			p(" (latest run %s, %s)", r.ID, r.Status)
		}
		p("\n")
	}
	p("\nKeys\n")
	row("in both", c.Both, "")
	row("only in A", c.OnlyA.Count, keySetDetail(c.OnlyA))
	row("only in B", c.OnlyB.Count, keySetDetail(c.OnlyB))

	p("\nOutcomes of the keys in both\n")
	row("completed in both", c.Equal+c.Different, "")
	outcome := func(label string, o checkpoint.Outcomes) {
		row(label, o.Count, "")
		for _, ex := range o.Examples {
			switch {
			case ex.ErrorA != "" && ex.ErrorB != "":
				p("      key %s: A %s, B %s\n", ex.Key, strconv.Quote(ex.ErrorA), strconv.Quote(ex.ErrorB))
			case ex.ErrorB != "":
				p("      key %s: %s\n", ex.Key, strconv.Quote(ex.ErrorB))
			default:
				p("      key %s: %s\n", ex.Key, strconv.Quote(ex.ErrorA))
			}
		}
	}
	outcome("completed in A, failed in B", c.FailedOnlyInB)
	outcome("failed in A, completed in B", c.FailedOnlyInA)
	outcome("failed in both", c.FailedInBoth)

	p("\nResults of the keys completed in both")
	if c.Tolerance > 0 {
		p(" (numbers within %g are equal)", c.Tolerance)
	}
	p("\n")
	row("equal", c.Equal, "")
	row("different", c.Different, "")
	for _, f := range c.Fields {
		name := f.Field
		if name == "" {
			name = "(whole result)"
		}
		row("  "+name, f.Count, "")
		for _, ex := range f.Examples {
			p("      key %s: %s %s → %s\n", ex.Key, name, shownValue(ex.A), shownValue(ex.B))
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(c.Params) > 0 && !(len(c.Params) == 1 && c.Params[0].A == nil && c.Params[0].B == nil) {
		fmt.Fprintf(tw, "\nParams of the latest runs\tA\tB\n")
		for _, d := range c.Params {
			name := d.Name
			if name == "" {
				name = "(params)"
			}
			if d.Differs {
				fmt.Fprintf(tw, "  %s\t%s\t%s\tdiffers\n", name, shownValue(d.A), shownValue(d.B))
			} else {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, shownValue(d.A), shownValue(d.B))
			}
		}
	}
	if len(c.Metrics) > 0 {
		fmt.Fprintf(tw, "\nMetrics (latest value)\tA\tB\tB-A\n")
		for _, m := range c.Metrics {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.Name, shownFloat(m.A), shownFloat(m.B), shownDelta(m.Delta))
		}
	}
	return tw.Flush()
}

func keySetDetail(k checkpoint.KeySet) string {
	if k.Count == 0 {
		return ""
	}
	s := fmt.Sprintf("   %d completed, %d failed", k.Completed, k.Failed)
	if len(k.Examples) > 0 {
		s += "; e.g. " + strings.Join(k.Examples, ", ")
	}
	return s
}

// shownValue is a JSON value as people read it; "-" when absent.
func shownValue(v []byte) string {
	if v == nil {
		return "-"
	}
	const max = 60
	s := string(v)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func shownFloat(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'g', 6, 64)
}

func shownDelta(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%+.4g", *v)
}
