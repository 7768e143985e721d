package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func newExportCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export NAME",
		Short: "Write a Postgres checkpoint as JSONL files in --dir",
		Long: `export writes the checkpoint NAME kept in Postgres (--db, or $CHECKPOINT_DB)
as the JSONL files of one machine: NAME_results.jsonl, NAME_errors.jsonl and
NAME_meta.json in --dir, which a Runner opened with WithDir (or the Python
library) reads. It reads one consistent snapshot, only reads (a read-only
role will do), and never overwrites files: export into an empty folder.

A failed key gets one errors line per recorded attempt, all with its latest
message (Postgres keeps only that), so WithMaxAttempts counts the same.`,
		Example: `  checkpoint export labels --db postgres://me@db.internal/jobs --dir ./labels-files
  CHECKPOINT_DB=postgres://me@db.internal/jobs checkpoint export labels --dir out --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := e.reader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			st, err := r.Export(ctx, args[0], e.dir)
			if err != nil {
				return e.explainDB(args[0], err)
			}
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"name": args[0], "dir": e.dir, "results": st.Results, "errors": st.Errors})
			}
			fmt.Fprintf(e.stdout, "exported %q from %s to %s: %s, %s\n",
				args[0], e.where(), e.dir, plural(st.Results, "result"), plural(st.Errors, "failed key"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the counts as one JSON object: name, dir, results, errors")
	return cmd
}
