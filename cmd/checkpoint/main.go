// Command checkpoint reviews, watches and repairs the checkpoints that the
// checkpoint library (and the Python library of the same format) writes.
//
//	go install github.com/checkpoint-go/checkpoint/cmd/checkpoint@latest
//	checkpoint ls --dir checkpoints
//
// The reading commands and serve also read checkpoints kept in Postgres
// (--dir postgres://… or --db), and export and import move a checkpoint
// between Postgres and a folder (source_pg.go). Exit status: 0 ok, 1
// failure, 2 bad usage. Data goes to standard output, errors to standard
// error; neither ever shows a database password.
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

// env is what every subcommand shares: the flags of the root command and
// where output goes. It is made per run, so tests can run the command in
// process, many times, without global state.
type env struct {
	dir    string // --dir
	db     string // --db, or --dir when it is a postgres:// URL (source_pg.go)
	stdout io.Writer
	stderr io.Writer
}

// A usageError is bad usage: exit status 2, with a hint to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	// Errors from the library start with its package name already.
	msg := redactSecrets(err.Error(), e.db, e.dir)
	fmt.Fprintf(stderr, "checkpoint: %s\n", strings.TrimPrefix(msg, "checkpoint: "))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(stderr, "Run 'checkpoint --help' for usage.")
		return 2
	}
	return 1
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "checkpoint",
		Short: "Review, watch and repair resumable batch job checkpoints",
		Long: `checkpoint reads and repairs the checkpoints written by the checkpoint
library for Go (and by the Python library of the same format).

Reading commands never take the checkpoint's lock and are safe while a job is
running. Commands that change files take the lock and refuse at once if a job
holds it.

Checkpoints kept in Postgres: ls, status, errors, results and serve read them
with --dir postgres://… (or --db); export and import move a checkpoint
between Postgres and a folder. No password is ever printed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&e.dir, "dir", "checkpoints", "the folder that holds the checkpoints, or a postgres:// URL (see --db)")
	root.PersistentFlags().StringVar(&e.db, "db", "", dbFlagHelp)
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error { return e.pickSource(cmd) }
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{err}
	})
	// Each subcommand lives in its own file as newXxxCmd(e).
	for _, newCmd := range subcommands() {
		root.AddCommand(newCmd(e))
	}
	return root
}

// subcommands lists the constructors of the subcommands, one file each.
// Add one line per subcommand.
func subcommands() []func(*env) *cobra.Command {
	return []func(*env) *cobra.Command{
		newLsCmd,
		newStatusCmd,
		newErrorsCmd,
		newResultsCmd,
		newRetryCmd,
		newForgetCmd,
		newCompactCmd,
		newResetCmd,
		newWatchCmd,
		newCompareCmd,
		newRunsCmd,
		newSummarizeCmd,
		newServeCmd,
		newSnapshotsCmd,
		newExportCmd,
		newImportCmd,
	}
}

// isCobraUsage reports errors cobra makes for bad arguments and unknown
// commands, which reach us without a type of their own.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
