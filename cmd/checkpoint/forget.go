package main

import (
	"fmt"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newForgetCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "forget NAME KEY...",
		Short: "Remove keys' outcomes so the next run does them again",
		Long: `forget removes every outcome (results and errors) of the named keys, so the
next run does them again. A key is matched as people type it: 42 matches a
key written as 42 or as "42". If any key has no outcome, nothing changes.
It takes the checkpoint's lock and refuses if a job runs.`,
		Example: `  checkpoint forget sample 3 4`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := checkpoint.Forget(e.dir, args[0], args[1:]...)
			if err != nil {
				return fmt.Errorf("%w; nothing changed", e.explain(args[0], err))
			}
			fmt.Fprintf(e.stdout, "forget: removed the outcomes of %s of %s\n", plural(n, "key"), args[0])
			return nil
		},
	}
}
