package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/checkpoint-go/checkpoint/postgres"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
)

// Checkpoints kept in Postgres (the postgres module's Store): the reading
// commands and serve read them when --dir is a postgres:// URL or --db names
// the database; export and import move a checkpoint between the database
// and a folder. The commands that change a checkpoint work on folders only
// and refuse a database with exit status 2. A database password is never
// printed: the database is shown through postgres.Redact, and run removes
// the password from every error.

// dbEnv is the environment variable export and import read the database
// from when --db is not given (the demo's workers read it too).
const dbEnv = "CHECKPOINT_DB"

const dbFlagHelp = `a Postgres connection string (postgres://user@host/db, or key=value): ls, status, errors,
results and serve read the checkpoints there instead of in --dir (the same as
--dir postgres://…); export and import move a checkpoint between it and --dir
(default $` + dbEnv + ` for those two). Prefer PGPASSWORD or ~/.pgpass to a password in the URL`

// readsPostgres are the subcommands that read a database.
var readsPostgres = map[string]bool{"ls": true, "status": true, "errors": true, "results": true, "serve": true}

// pickSource decides, before a subcommand runs, whether it works on the
// folder e.dir or on the database e.db.
func (e *env) pickSource(cmd *cobra.Command) error {
	name := cmd.Name()
	if name == "export" || name == "import" {
		if postgres.IsConnString(e.dir) {
			return usagef("%s: --dir is the folder of the JSONL files; name the database with --db (or $%s)", name, dbEnv)
		}
		if e.db == "" {
			e.db = os.Getenv(dbEnv)
		}
		if e.db == "" {
			return usagef("%s needs a database: --db postgres://user@host/db, or $%s", name, dbEnv)
		}
		return nil
	}
	if postgres.IsConnString(e.dir) {
		if e.db != "" {
			return usagef("--dir is a database URL and --db names one too: give one of them")
		}
		e.db, e.dir = e.dir, ""
	} else if e.db != "" && cmd.Flags().Changed("dir") {
		return usagef("--db and --dir %s both say where the checkpoints are: give one of them", e.dir)
	}
	if e.db == "" || readsPostgres[name] || name == "help" || strings.HasPrefix(name, "__complete") || name == "completion" {
		return nil
	}
	return usagef("%s works on a folder of JSONL files, not on Postgres. On a database the commands are ls, status, errors, results, serve, export and import; to %s a Postgres checkpoint, export it to a folder first", name, name)
}

// where names the checkpoints' place for people: the folder, or the
// database without its password.
func (e *env) where() string {
	if e.db != "" {
		return postgres.Redact(e.db)
	}
	return e.dir
}

// reader opens the database read-only.
func (e *env) reader(ctx context.Context) (*postgres.Reader, error) {
	return postgres.OpenReader(ctx, e.db)
}

// redactSecrets removes the passwords of the connection strings conns from
// msg: pgx and postgres.Redact leave them out already, and this makes sure
// whatever else quotes a connection string does too.
func redactSecrets(msg string, conns ...string) string {
	for _, c := range conns {
		if c == "" {
			continue
		}
		var secrets []string
		if cfg, err := pgconn.ParseConfig(c); err == nil && cfg.Password != "" {
			secrets = append(secrets, cfg.Password)
		}
		if u, err := url.Parse(c); err == nil {
			if p, ok := u.User.Password(); ok && p != "" {
				secrets = append(secrets, p, url.PathEscape(p), url.QueryEscape(p))
			}
		}
		if c != postgres.Redact(c) {
			msg = strings.ReplaceAll(msg, c, postgres.Redact(c))
		}
		for _, s := range secrets {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// failures streams the failed keys of name from the folder or the
// database; done closes what it opened and returns the first error (it may
// be called more than once).
func (e *env) failures(ctx context.Context, name string) (all iter.Seq[checkpoint.Failure[string]], done func() error, err error) {
	if e.db == "" {
		v, err := e.inspect(name)
		if err != nil {
			return nil, nil, err
		}
		return v.Failures(), func() error { v.Close(); return v.Err() }, nil
	}
	r, err := e.reader(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := e.exists(ctx, r, name); err != nil {
		r.Close()
		return nil, nil, err
	}
	var ferr error
	all = func(yield func(checkpoint.Failure[string]) bool) {
		ferr = r.Failures(ctx, name, func(f checkpoint.BackendFailure) error {
			if !yield(checkpoint.Failure[string]{Key: string(f.Key), Error: f.Error, Attempts: f.Attempts, Time: f.Time}) {
				return errStop
			}
			return nil
		})
		if ferr == errStop {
			ferr = nil
		}
	}
	return all, func() error { r.Close(); return ferr }, nil // pgxpool's Close may be called again
}

// errStop ends a Reader's walk when the consumer of an iterator stops.
var errStop = errors.New("stop")

// exists fails, as explainDB says, if the database has no checkpoint name:
// before any output, not half way through it. (A page of one result in key
// order: the primary key finds it without a scan.)
func (e *env) exists(ctx context.Context, r *postgres.Reader, name string) error {
	err := r.Results(ctx, name, postgres.ResultQuery{Limit: 1, ByKey: true}, func(postgres.Result) error { return nil })
	return e.explainDB(name, err)
}

// explainDB rewords a missing checkpoint in a database.
func (e *env) explainDB(name string, err error) error {
	if errors.Is(err, checkpoint.ErrNoCheckpoint) {
		return fmt.Errorf("no checkpoint %q in %s (checkpoint ls --db … lists them)", name, e.where())
	}
	return err
}

// lsPostgres is ls on a database: the same columns and --json fields, with
// "running" meaning a runner holds a lease on one of its keys now, and the
// size that of its rows. A database keeps no total.
func (e *env) lsPostgres(ctx context.Context, asJSON bool) error {
	r, err := e.reader(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	list, err := r.Checkpoints(ctx)
	if err != nil {
		return err
	}
	rows := make([]lsRow, 0, len(list))
	for _, s := range list {
		rows = append(rows, lsRow{Name: s.Name, Kind: "checkpoint", Completed: int(s.Completed), Failed: int(s.Failed),
			LastUpdated: jsonTime(s.LastUpdated), Running: s.Running(), Size: s.Bytes})
	}
	if len(rows) == 0 && !asJSON {
		fmt.Fprintf(e.stderr, "no checkpoints in %s\n", e.where())
		return nil
	}
	if asJSON {
		out := newJSONLines(e.stdout)
		for _, r := range rows {
			out.put(r)
		}
		return out.flush()
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tCOMPLETED\tFAILED\tTOTAL\tLAST UPDATE\tRUNNING\tSIZE\t")
	for _, r := range rows {
		running := ""
		if r.Running {
			running = "running"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t-\t%s\t%s\t%s\t\n", r.Name, r.Kind, r.Completed, r.Failed,
			humanTime(time.Time(r.LastUpdated), now), running, humanSize(r.Size))
	}
	return tw.Flush()
}

// pgStatusJSON is status --json on a database: the fields of the folder's
// status that mean the same, and the leases.
type pgStatusJSON struct {
	Name          string   `json:"name"`
	Source        string   `json:"source"` // "postgres"
	Completed     int64    `json:"completed"`
	Failed        int64    `json:"failed"`
	OutOfAttempts *int     `json:"out_of_attempts,omitempty"`
	Total         int      `json:"total"` // 0: a database keeps no total
	StartedAt     jsonTime `json:"started_at"`
	LastUpdated   jsonTime `json:"last_updated"`
	Running       bool     `json:"running"`
	Rate          float64  `json:"rate"` // outcomes per second over the last minute
	Size          int64    `json:"size"`
	// Leased counts the keys without a result that runners hold a live
	// lease on; InFlight lists up to 100 of them.
	Leased   int64             `json:"leased"`
	InFlight []json.RawMessage `json:"in_flight"`
}

func (e *env) statusPostgres(ctx context.Context, name string, asJSON bool, maxAttempts int) error {
	r, err := e.reader(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := r.Checkpoint(ctx, name)
	if err != nil {
		return e.explainDB(name, err)
	}
	keys, err := r.LeasedKeys(ctx, name, 100)
	if err != nil {
		return err
	}
	st := pgStatusJSON{Name: s.Name, Source: "postgres", Completed: s.Completed, Failed: s.Failed,
		StartedAt: jsonTime(s.Created), LastUpdated: jsonTime(s.LastUpdated), Running: s.Running(),
		Rate: s.Rate(), Size: s.Bytes, Leased: s.Leased, InFlight: []json.RawMessage{}}
	for _, k := range keys {
		st.InFlight = append(st.InFlight, json.RawMessage(k))
	}
	if maxAttempts > 0 {
		n := 0
		err := r.Failures(ctx, name, func(f checkpoint.BackendFailure) error {
			if f.Attempts >= maxAttempts {
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		st.OutOfAttempts = &n
	}
	if asJSON {
		out := newJSONLines(e.stdout)
		out.put(st)
		return out.flush()
	}
	printStatusPostgres(e, st)
	return nil
}

func printStatusPostgres(e *env, s pgStatusJSON) {
	w := e.stdout
	fmt.Fprintf(w, "%s (in %s)\n", s.Name, e.where())
	fmt.Fprintf(w, "  completed    %d (a database keeps no total)\n", s.Completed)
	fmt.Fprintf(w, "  failed       %d", s.Failed)
	if s.OutOfAttempts != nil {
		fmt.Fprintf(w, " (%d out of attempts)", *s.OutOfAttempts)
	}
	fmt.Fprintln(w)
	now := time.Now()
	fmt.Fprintf(w, "  started      %s\n", humanTime(time.Time(s.StartedAt), now))
	fmt.Fprintf(w, "  last update  %s\n", humanTime(time.Time(s.LastUpdated), now))
	if s.Running {
		fmt.Fprintf(w, "  running      yes (runners hold leases on %s)\n", plural(int(s.Leased), "key"))
	} else {
		fmt.Fprintf(w, "  running      no (no key is leased to a runner)\n")
	}
	fmt.Fprintf(w, "  rate         %.1f records/s over the last minute\n", s.Rate)
	fmt.Fprintf(w, "  size         %s of rows\n", humanSize(s.Size))
	if len(s.InFlight) > 0 {
		fmt.Fprintf(w, "  in flight    %s\n", shownKeys(s.InFlight))
	}
}

// resultsPostgres streams the results of name from the database, in the
// order they were completed, in the formats of the folder's results.
func (e *env) resultsPostgres(ctx context.Context, name, format string) error {
	r, err := e.reader(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := e.exists(ctx, r, name); err != nil {
		return err
	}
	var rerr error
	// The writers copy what they keep past one turn of the loop (the CSV
	// header rows), as the Reader's slices are only valid during the call.
	all := func(yield func([]byte, []byte) bool) {
		rerr = r.Results(ctx, name, postgres.ResultQuery{}, func(res postgres.Result) error {
			if !yield(res.Key, res.Result) {
				return errStop
			}
			return nil
		})
		if rerr == errStop {
			rerr = nil
		}
	}
	w := bufio.NewWriterSize(e.stdout, 1<<20)
	if format == "csv" {
		err = writeCSV(w, all)
	} else {
		err = writeJSONResults(w, all, format == "json")
	}
	return errors.Join(err, w.Flush(), rerr)
}
