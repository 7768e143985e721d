// Command checkpoint-pg moves checkpoints between JSONL folders and
// Postgres:
//
//	checkpoint-pg import --dir checkpoints --db postgres://user@host/jobs NAME
//	checkpoint-pg export --dir out --db postgres://user@host/jobs NAME
//
// It lives in the postgres module, so that the main command does not pull in
// the driver; export.go and import.go follow the main command's pattern
// (newXxxCmd(e)) and move into cmd/checkpoint once that is a module of its
// own. Exit status: 0 ok, 1 failure, 2 bad usage. The password of --db is
// never printed.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type env struct {
	dir    string // --dir
	db     string // --db: a Postgres connection string
	json   bool   // --json
	stdout io.Writer
	stderr io.Writer
}

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "checkpoint-pg",
		Short:         "Move checkpoints between JSONL folders and Postgres",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&e.dir, "dir", "checkpoints", "the folder of the JSONL checkpoints")
	root.PersistentFlags().StringVar(&e.db, "db", os.Getenv("CHECKPOINT_DB"), "Postgres connection string (default $CHECKPOINT_DB)")
	root.PersistentFlags().BoolVar(&e.json, "json", false, "print the counts as JSON")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newExportCmd(e), newImportCmd(e))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "checkpoint-pg: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "accepts ") {
		fmt.Fprintln(stderr, "Run 'checkpoint-pg --help' for usage.")
		return 2
	}
	return 1
}
