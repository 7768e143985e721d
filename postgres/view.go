package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A Reader reads the checkpoints in a database for people: the checkpoint
// command's ls, status, errors and results, and its web view. It only reads:
// its connections run with default_transaction_read_only, it never creates
// the tables (a database without them has no checkpoints) and never takes a
// lease, so it is safe beside running jobs and works with a read-only role.
//
// A Reader is safe for concurrent use. Close it when done.
type Reader struct {
	pool *pgxpool.Pool
}

// OpenReader connects to the database at connString (as Open reads it).
// Errors never show the password.
func OpenReader(ctx context.Context, connString string) (*Reader, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err) // pgx redacts the password
	}
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
		cfg.ConnConfig.RuntimeParams["application_name"] = "checkpoint reader"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s: %w", Redact(connString), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", Redact(connString), err)
	}
	r := &Reader{pool: pool}
	if err := r.checkSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the Reader's connections.
func (r *Reader) Close() { r.pool.Close() }

// checkSchema refuses a schema newer than this module's, whose columns it may not know.
func (r *Reader) checkSchema(ctx context.Context) error {
	if ok, err := r.hasTables(ctx); !ok {
		return err
	}
	var v int
	if err := r.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM checkpoint.schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if v > SchemaVersion {
		return fmt.Errorf("postgres: the database's checkpoint schema is version %d, newer than this module's %d: upgrade the checkpoint command", v, SchemaVersion)
	}
	return nil
}

// A Summary is one checkpoint's counts, from its rows.
type Summary struct {
	Name      string
	Completed int64 // keys whose latest outcome is a result
	Failed    int64 // keys whose latest outcome is an error
	// Leased is the keys without a result that a runner holds a live
	// lease on now: items in hand.
	Leased int64
	// Recent is the outcomes recorded in the last minute.
	Recent int64
	// Created is when the checkpoint was first opened (or imported), or
	// its first outcome if that is earlier (an import keeps the files'
	// times); LastUpdated the time of its latest outcome (zero without one).
	Created, LastUpdated time.Time
	// Bytes is the size of its rows.
	Bytes int64
}

// Running reports whether a runner holds a lease on one of its keys now.
func (s Summary) Running() bool { return s.Leased > 0 }

// Rate is the outcomes recorded per second over the last minute.
func (s Summary) Rate() float64 { return float64(s.Recent) / 60 }

// startedAt is the earlier of its creation and its first outcome (an
// import keeps the files' times).
func (s Summary) startedAt(first time.Time) time.Time {
	if !first.IsZero() && first.Before(s.Created) {
		return first
	}
	return s.Created
}

// summarySQL computes a Summary per checkpoint in one scan of its rows;
// the caller appends the WHERE clause.
const summarySQL = `SELECT c.name, c.created_at,
	count(i.key) FILTER (WHERE i.state = 2),
	count(i.key) FILTER (WHERE i.state = 1),
	count(i.key) FILTER (WHERE i.state <> 2 AND i.lease_until > now()),
	count(i.key) FILTER (WHERE i.state > 0 AND i.updated_at > now() - interval '1 minute'),
	min(i.updated_at) FILTER (WHERE i.state > 0),
	max(i.updated_at) FILTER (WHERE i.state > 0),
	coalesce(sum(pg_column_size(i.*)), 0)
FROM checkpoint.checkpoints c LEFT JOIN checkpoint.items i ON i.checkpoint_id = c.id `

func scanSummary(row pgx.Row) (Summary, error) {
	var s Summary
	var first, last *time.Time
	err := row.Scan(&s.Name, &s.Created, &s.Completed, &s.Failed, &s.Leased, &s.Recent, &first, &last, &s.Bytes)
	if first != nil {
		s.Created = s.startedAt(*first)
	}
	if last != nil {
		s.LastUpdated = *last
	}
	return s, err
}

// Checkpoints lists every checkpoint in the database by name.
func (r *Reader) Checkpoints(ctx context.Context) ([]Summary, error) {
	if ok, err := r.hasTables(ctx); !ok {
		return nil, err
	}
	rows, err := r.pool.Query(ctx, summarySQL+`GROUP BY c.id ORDER BY c.name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer rows.Close()
	var out []Summary
	for rows.Next() {
		s, err := scanSummary(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// Checkpoint summarises the checkpoint called name; an error wrapping
// checkpoint.ErrNoCheckpoint says there is none.
func (r *Reader) Checkpoint(ctx context.Context, name string) (Summary, error) {
	if ok, err := r.hasTables(ctx); !ok {
		return Summary{}, cmp.Or(err, r.noCheckpoint(name))
	}
	s, err := scanSummary(r.pool.QueryRow(ctx, summarySQL+`WHERE c.name = $1 GROUP BY c.id`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, r.noCheckpoint(name)
	}
	if err != nil {
		return s, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

func (r *Reader) noCheckpoint(name string) error {
	return fmt.Errorf("postgres: %w: %q", checkpoint.ErrNoCheckpoint, name)
}

// hasTables reports whether the checkpoint tables exist (a database no
// runner has opened has none, and no checkpoints).
func (r *Reader) hasTables(ctx context.Context) (bool, error) {
	var ok bool
	err := r.pool.QueryRow(ctx, `SELECT to_regclass('checkpoint.items') IS NOT NULL
		AND to_regclass('checkpoint.schema_migrations') IS NOT NULL`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	return ok, nil
}

// id finds a checkpoint's id.
func (r *Reader) id(ctx context.Context, name string) (int64, error) {
	var id int64
	if ok, err := r.hasTables(ctx); !ok {
		return 0, cmp.Or(err, r.noCheckpoint(name))
	}
	err := r.pool.QueryRow(ctx, `SELECT id FROM checkpoint.checkpoints WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, r.noCheckpoint(name)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: %w", err)
	}
	return id, nil
}

// Failures calls fn with every key of the checkpoint called name whose
// latest outcome is an error, oldest first, as a Runner's AllErrors.
func (r *Reader) Failures(ctx context.Context, name string, fn func(checkpoint.BackendFailure) error) error {
	id, err := r.id(ctx, name)
	if err != nil {
		return err
	}
	rows, err := r.pool.Query(ctx, `SELECT key, coalesce(error, ''), attempts, updated_at FROM checkpoint.items
		WHERE checkpoint_id = $1 AND state = 1 ORDER BY updated_at, key`, id)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var f checkpoint.BackendFailure
		var key string
		if err := rows.Scan(&key, &f.Error, &f.Attempts, &f.Time); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		f.Key = []byte(key)
		if err := fn(f); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// A Result is a completed key's latest result, as JSON text.
type Result struct {
	Key, Result []byte
	Time        time.Time
}

// ResultQuery selects results: Offset and Limit page through them (Limit 0
// means all); Search keeps those whose key or result contains it, ignoring
// case. They come in the order they were completed, or with ByKey in the
// byte order of their keys' JSON, which the table's primary key serves
// without sorting every result first (for pages of a large checkpoint).
type ResultQuery struct {
	Offset, Limit int
	Search        string
	ByKey         bool
}

// Results calls fn with the results of the checkpoint called name that q
// selects, streaming: memory does not
// grow with their number. The slices are valid during the call only.
func (r *Reader) Results(ctx context.Context, name string, q ResultQuery, fn func(Result) error) error {
	id, err := r.id(ctx, name)
	if err != nil {
		return err
	}
	sql := `SELECT key, result::text, updated_at FROM checkpoint.items WHERE checkpoint_id = $1 AND state = 2`
	args := []any{id}
	if q.Search != "" {
		// strpos, not LIKE: the search text is a value, never a pattern.
		sql += ` AND (strpos(lower(key), lower($2)) > 0 OR strpos(lower(result::text), lower($2)) > 0)`
		args = append(args, q.Search)
	}
	if q.ByKey {
		sql += ` ORDER BY key`
	} else {
		sql += ` ORDER BY updated_at, key`
	}
	if q.Offset > 0 {
		sql += fmt.Sprintf(` OFFSET %d`, q.Offset)
	}
	if q.Limit > 0 {
		sql += fmt.Sprintf(` LIMIT %d`, q.Limit)
	}
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		var at time.Time
		if err := rows.Scan(nil, nil, &at); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := fn(Result{Key: raw[0], Result: raw[1], Time: at}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// LeasedKeys returns up to limit keys (JSON text) of the checkpoint called
// name that a runner holds a live lease on now, oldest claim first.
func (r *Reader) LeasedKeys(ctx context.Context, name string, limit int) ([]string, error) {
	id, err := r.id(ctx, name)
	if err != nil {
		return nil, err
	}
	rows, err := r.pool.Query(ctx, `SELECT key FROM checkpoint.items WHERE checkpoint_id = $1
		AND state <> 2 AND lease_until > now() ORDER BY lease_until, key LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return keys, nil
}

// A ProgressPoint is the outcomes recorded up to a time.
type ProgressPoint struct {
	Time time.Time
	N    int64
}

// Progress returns the cumulative outcomes of the checkpoint called name
// over time, in at most points steps between its first and latest outcome.
// A key counts once, at the time of its latest outcome.
func (r *Reader) Progress(ctx context.Context, name string, points int) ([]ProgressPoint, error) {
	id, err := r.id(ctx, name)
	if err != nil {
		return nil, err
	}
	rows, err := r.pool.Query(ctx, `WITH b AS (SELECT min(updated_at) AS lo, max(updated_at) AS hi
			FROM checkpoint.items WHERE checkpoint_id = $1 AND state > 0),
		s AS (SELECT width_bucket(extract(epoch FROM i.updated_at), extract(epoch FROM b.lo),
				extract(epoch FROM b.hi) + 0.000001, $2) AS n, max(i.updated_at) AS at, count(*) AS c
			FROM checkpoint.items i, b WHERE i.checkpoint_id = $1 AND i.state > 0 GROUP BY 1)
		SELECT at, sum(c) OVER (ORDER BY n)::bigint FROM s ORDER BY n`, id, max(points, 1))
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ProgressPoint, error) {
		var p ProgressPoint
		return p, row.Scan(&p.Time, &p.N)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// IsConnString reports whether s is a Postgres connection URL
// (postgres:// or postgresql://), as the checkpoint command accepts in
// place of a folder.
func IsConnString(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}
