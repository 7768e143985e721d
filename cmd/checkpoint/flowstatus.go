package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// writeFlowStatus prints a flow's steps (from checkpoint.ReadFlowSteps) as a
// table: what `checkpoint status NAME` shows for a flow.
func writeFlowStatus(w io.Writer, steps []checkpoint.StepStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATUS\tATTEMPTS\tSTARTED\tDURATION\tERROR")
	for _, s := range steps {
		started, took := "-", "-"
		if !s.Started.IsZero() {
			started = s.Started.Local().Format(time.DateTime)
		}
		switch {
		case s.Status == checkpoint.StepRunning && !s.Started.IsZero():
			took = time.Since(s.Started).Round(time.Second).String() + " so far"
		case !s.Finished.IsZero():
			took = s.Duration.Round(time.Millisecond).String()
		}
		msg := []rune(firstLine(s.Error))
		if len(msg) > 80 {
			msg = append(msg[:77], []rune("...")...)
		}
		if len(msg) == 0 {
			msg = []rune("-")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Status, s.Attempts, started, took, string(msg))
	}
	return tw.Flush()
}
