package main

import (
	"encoding/json"
	"fmt"

	"github.com/checkpoint-go/checkpoint/postgres"
	"github.com/spf13/cobra"
)

func newImportCmd(e *env) *cobra.Command {
	var numberKeys bool
	cmd := &cobra.Command{
		Use:   "import NAME",
		Short: "Load the JSONL checkpoint NAME in --dir (Go- or Python-written) into Postgres",
		Example: `  checkpoint-pg import --dir checkpoints --db postgres://me@db.internal/jobs labels
  checkpoint-pg import --number-keys --dir python_checkpoints --db "$CHECKPOINT_DB" prompts`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if e.db == "" {
				return usagef("import needs --db (or $CHECKPOINT_DB)")
			}
			s, err := postgres.Open(cmd.Context(), e.db, postgres.WithRetryFor(0))
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := postgres.Import(cmd.Context(), s, e.dir, args[0], postgres.ImportOptions{NumberKeys: numberKeys})
			if err != nil {
				return err
			}
			if e.json {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"name": args[0], "lines": st.Lines, "completed": st.Completed, "failed": st.Failed})
			}
			fmt.Fprintf(e.stdout, "imported %q from %s into %s: %d lines, %d completed keys, %d failed keys\n",
				args[0], e.dir, postgres.Redact(e.db), st.Lines, st.Completed, st.Failed)
			return nil
		},
	}
	cmd.Flags().BoolVar(&numberKeys, "number-keys", false, `store keys written as strings of digits ("42", as Python writes every key) as numbers, for runners with integer keys`)
	return cmd
}
