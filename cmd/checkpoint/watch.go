package main

import (
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newWatchCmd(e *env) *cobra.Command {
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "watch NAME",
		Short: "Follow a running job from another terminal",
		Long: `watch follows a job as it writes its checkpoint: in a terminal, a live bar with
the count, total, rate, ETA and failures; elsewhere (a file, a pipe, a CI log)
a plain line at most every --every. Each new failure is printed as it
arrives. It ends when the job releases the lock and nothing new arrives, or
on Ctrl-C. It never takes the lock.`,
		Example: `  checkpoint watch sample
  checkpoint watch sample --every 30s > progress.log`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if every <= 0 {
				return usagef("--every is %v, want more than 0", every)
			}
			return e.explain(args[0], checkpoint.Watch(cmd.Context(), e.dir, args[0], e.stdout, every))
		},
	}
	cmd.Flags().DurationVar(&every, "every", 5*time.Second, "at most one plain line per this interval (not in a terminal)")
	return cmd
}
