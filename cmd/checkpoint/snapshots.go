package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

// snapshotRow is one snapshot with its owner: "" for the folder's shared
// snapshots (OpenSnapshots), else the flow whose own they are.
type snapshotRow struct {
	Flow string `json:"flow,omitempty"`
	checkpoint.SnapshotInfo
}

func newSnapshotsCmd(e *env) *cobra.Command {
	var asJSON bool
	var flow string
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List the snapshots in the folder: the shared ones and each flow's own",
		Long: `snapshots lists the named snapshots kept in the folder: those of
checkpoint.OpenSnapshots (DIR/snapshots/) and those of each flow
(DIR/NAME_snapshots/), with their kind (json or raw), size and the time
they were saved. It changes nothing and is safe while jobs run.`,
		Example: `  checkpoint snapshots --dir checkpoints
  checkpoint snapshots --flow train
  checkpoint snapshots --json | jq '.[] | select(.kind == "raw") | .size'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rows, err := readAllSnapshots(e.dir, flow)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if rows == nil {
					rows = []snapshotRow{}
				}
				return enc.Encode(rows)
			}
			return writeSnapshots(e.stdout, rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, for scripts")
	cmd.Flags().StringVar(&flow, "flow", "", "list only this flow's own snapshots")
	return cmd
}

func readAllSnapshots(dir, flow string) ([]snapshotRow, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	owners := []string{flow}
	if flow == "" {
		matches, err := filepath.Glob(filepath.Join(dir, "*_snapshots"))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				owners = append(owners, strings.TrimSuffix(filepath.Base(m), "_snapshots"))
			}
		}
	}
	var rows []snapshotRow
	for _, owner := range owners {
		list, err := checkpoint.ReadSnapshots(dir, owner)
		if err != nil {
			return nil, err
		}
		for _, info := range list {
			rows = append(rows, snapshotRow{Flow: owner, SnapshotInfo: info})
		}
	}
	return rows, nil
}

func writeSnapshots(w io.Writer, rows []snapshotRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no snapshots")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tNAME\tKIND\tSIZE\tSAVED")
	for _, r := range rows {
		owner := r.Flow
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", owner, r.Name, r.Kind, humanSize(r.Size), r.SavedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
