package main

import (
	"encoding/json"
	"fmt"

	"github.com/checkpoint-go/checkpoint/postgres"
	"github.com/spf13/cobra"
)

func newImportCmd(e *env) *cobra.Command {
	var asJSON, numberKeys bool
	cmd := &cobra.Command{
		Use:   "import NAME",
		Short: "Load the JSONL checkpoint NAME in --dir (Go- or Python-written) into Postgres",
		Long: `import loads the checkpoint NAME of --dir, written by this library or by the
Python library, into the Postgres checkpoint of the same name (--db, or
$CHECKPOINT_DB), in one transaction: runners on many machines then go on
from there. The latest outcome of each key wins, as when a Runner opens
the files; a failed key keeps its number of errors lines as its attempts;
keys already in the database take the imported outcome. The tables are
created if the database has none yet.

The Python library writes every key as a string: --number-keys stores keys
made only of digits ("42") as numbers (42), as a Go runner with integer keys
claims them.`,
		Example: `  checkpoint import labels --dir checkpoints --db postgres://me@db.internal/jobs
  checkpoint import prompts --number-keys --dir python_checkpoints   # database from $CHECKPOINT_DB`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := postgres.Open(ctx, e.db, postgres.WithRetryFor(0))
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := postgres.Import(ctx, s, e.dir, args[0], postgres.ImportOptions{NumberKeys: numberKeys})
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"name": args[0], "lines": st.Lines, "completed": st.Completed, "failed": st.Failed})
			}
			fmt.Fprintf(e.stdout, "imported %q from %s into %s: %s, %s completed, %s failed\n",
				args[0], e.dir, e.where(), plural(st.Lines, "line"), plural(st.Completed, "key"), plural(st.Failed, "key"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&numberKeys, "number-keys", false, `store keys written as strings of digits ("42", as Python writes every key) as numbers, for runners with integer keys`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the counts as one JSON object: name, lines, completed, failed")
	return cmd
}
