package main

import (
	"encoding/json"
	"fmt"

	"github.com/checkpoint-go/checkpoint/postgres"
	"github.com/spf13/cobra"
)

func newExportCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "export NAME",
		Short: "Write a Postgres checkpoint as JSONL files in --dir",
		Example: `  checkpoint-pg export --db postgres://me@db.internal/jobs --dir ./labels-files labels
  # then, on one machine: checkpoint.Open[...]("labels", checkpoint.WithDir("./labels-files"))`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if e.db == "" {
				return usagef("export needs --db (or $CHECKPOINT_DB)")
			}
			s, err := postgres.Open(cmd.Context(), e.db, postgres.WithRetryFor(0))
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := postgres.Export(cmd.Context(), s, args[0], e.dir)
			if err != nil {
				return err
			}
			if e.json {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"name": args[0], "dir": e.dir, "results": st.Results, "errors": st.Errors})
			}
			fmt.Fprintf(e.stdout, "exported %q from %s to %s: %d results, %d failed keys\n",
				args[0], postgres.Redact(e.db), e.dir, st.Results, st.Errors)
			return nil
		},
	}
}
