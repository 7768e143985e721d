package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type lsRow struct {
	Name        string   `json:"name"`
	Completed   int      `json:"completed"`
	Failed      int      `json:"failed"`
	Total       int      `json:"total"`
	LastUpdated jsonTime `json:"last_updated"`
	Running     bool     `json:"running"`
	Size        int64    `json:"size"`
}

func newLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the checkpoints in the folder",
		Long: `ls prints one row per checkpoint in the folder: completed and failed keys,
the last update, "running" when a job holds the checkpoint's lock now, and
the size of its files. It never takes a lock.`,
		Example: `  checkpoint ls --dir checkpoints
  checkpoint ls --json | jq -r 'select(.failed > 0) | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := names(e.dir)
			if err != nil {
				return err
			}
			var rows []lsRow
			var errs []error
			for _, name := range list {
				v, err := e.inspect(name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				in := v.Info()
				v.Close()
				rows = append(rows, lsRow{in.Name, in.Completed, in.Failed, in.Total, jsonTime(in.LastUpdated), in.Running, in.Size})
			}
			if asJSON {
				out := newJSONLines(e.stdout)
				for _, r := range rows {
					out.put(r)
				}
				if err := out.flush(); err != nil {
					return err
				}
			} else if len(rows) > 0 {
				now := time.Now()
				tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tCOMPLETED\tFAILED\tTOTAL\tLAST UPDATE\tRUNNING\tSIZE\t")
				for _, r := range rows {
					total, running := "-", ""
					if r.Total > 0 {
						total = fmt.Sprint(r.Total)
					}
					if r.Running {
						running = "running"
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.Name, r.Completed, r.Failed, total,
						humanTime(time.Time(r.LastUpdated), now), running, humanSize(r.Size))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			} else if len(errs) == 0 {
				fmt.Fprintf(e.stderr, "no checkpoints in %s\n", e.dir)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line: name, completed, failed, total, last_updated, running, size")
	return cmd
}
