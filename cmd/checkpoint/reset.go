package main

import (
	"fmt"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newResetCmd(e *env) *cobra.Command {
	var noBackup bool
	cmd := &cobra.Command{
		Use:   "reset NAME",
		Short: "Start a checkpoint over, keeping its files in a backup folder",
		Long: `reset moves all the files of NAME (journals, meta, side files, in-flight
keys and crash counts, run history and metrics, a flow of that name and its
snapshots; NAME may be a flow alone) into a new folder
DIR/NAME.bak-<timestamp>/, named in the output,
so the next run starts from zero and nothing is destroyed. --no-backup deletes them instead.
It takes the checkpoint's lock and refuses if a job runs.`,
		Example: `  checkpoint reset sample
  checkpoint reset sample --no-backup`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bak, err := checkpoint.Reset(e.dir, args[0], !noBackup)
			if err != nil {
				return err
			}
			if noBackup {
				fmt.Fprintf(e.stdout, "reset: deleted the files of %s\n", args[0])
			} else {
				fmt.Fprintf(e.stdout, "reset: moved the files of %s to %s\n", args[0], bak)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBackup, "no-backup", false, "delete the files instead of moving them to a backup folder")
	return cmd
}
