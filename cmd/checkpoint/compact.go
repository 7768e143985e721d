package main

import (
	"fmt"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newCompactCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "compact NAME",
		Short: "Rewrite the journals keeping each key's latest outcome only",
		Long: `compact rewrites the checkpoint's two JSONL files so that each key keeps only
its latest outcome (a failed key keeps its errors: they count its attempts),
and prints their size before and after. Lines are copied as written, so the
Python library reads the same state. A crash at any moment leaves the old
files or the new ones. It takes the checkpoint's lock and refuses if a job
runs.`,
		Example: `  checkpoint compact sample
  checkpoint status sample    # shows how much compact would drop`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			before, after, err := checkpoint.Compact(e.dir, args[0])
			if err != nil {
				return e.explain(args[0], err)
			}
			saved := 0.0
			if before > 0 {
				saved = 100 * float64(before-after) / float64(before)
			}
			fmt.Fprintf(e.stdout, "compact: %s: %s before, %s after (%.0f%% smaller)\n",
				args[0], humanSize(before), humanSize(after), saved)
			return nil
		},
	}
}
