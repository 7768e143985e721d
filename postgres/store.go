// Package postgres keeps checkpoints in PostgreSQL, so that the same job can
// run on many machines at once: each item is handed to one runner at a time
// under a lease, completed keys are skipped everywhere, and a runner that dies
// loses its leases to the others.
//
//	store, err := postgres.Open(ctx, "postgres://user@db.internal/jobs")
//	...
//	defer store.Close()
//	runner, err := checkpoint.Open[string, Page]("crawl", checkpoint.WithBackend(store))
//
// It is a module of its own, so that users of the files never download the
// driver (github.com/jackc/pgx/v5).
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A Store is a Postgres database holding checkpoints. It is safe for
// concurrent use, and one Store serves any number of runners. Close it after
// the runners that use it.
type Store struct {
	pool     *pgxpool.Pool
	ownPool  bool
	retryFor time.Duration
	log      *slog.Logger

	claimTrips, claimKeys atomic.Int64
	saveTrips, saves      atomic.Int64
}

// An Option configures Open and New.
type Option func(*Store)

// WithRetryFor sets how long a statement is retried when the connection to
// Postgres fails (a restart, a failover, a cut connection): the runner waits
// and reconnects instead of failing. The default is 2 minutes.
func WithRetryFor(d time.Duration) Option {
	return func(s *Store) { s.retryFor = d }
}

// WithLogger sets where notices about lost connections go; the default is
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// Open connects to the database at connString (a URL or key=value string, as
// pgx reads it, e.g. "postgres://user:pass@host:5432/db"; pool settings such
// as pool_max_conns go in it too) and creates or upgrades the checkpoint
// tables (see Migrate). Errors never show the password.
func Open(ctx context.Context, connString string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err) // pgx redacts the password
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s: %w", Redact(connString), err)
	}
	s, err := New(ctx, pool, opts...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownPool = true
	return s, nil
}

// New is Open on a pool the caller made and keeps: Close does not close it.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	s := &Store{pool: pool, retryFor: 2 * time.Minute}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.retry(ctx, "migrate", func(ctx context.Context) error { return Migrate(ctx, pool) }); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

// Close closes the pool if Open made it.
func (s *Store) Close() {
	if s.ownPool {
		s.pool.Close()
	}
}

// Pool returns the Store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Stats are counts of round trips since the Store was made, for benchmarks
// and monitoring.
type Stats struct {
	ClaimRoundTrips int64 // claim statements sent
	ClaimedKeys     int64 // keys sent in them
	SaveRoundTrips  int64 // batches of outcomes written
	Saves           int64 // outcomes in them
}

// Stats returns the Store's counts so far.
func (s *Store) Stats() Stats {
	return Stats{
		ClaimRoundTrips: s.claimTrips.Load(), ClaimedKeys: s.claimKeys.Load(),
		SaveRoundTrips: s.saveTrips.Load(), Saves: s.saves.Load(),
	}
}

// Attach implements checkpoint.Backend: it finds or creates the checkpoint
// called name. Runners call it from checkpoint.Open.
func (s *Store) Attach(ctx context.Context, name string, cfg checkpoint.AttachConfig) (checkpoint.BackendCheckpoint, error) {
	if name == "" {
		return nil, errors.New("postgres: empty checkpoint name")
	}
	c := &attached{s: s, lease: cfg.Lease, maxAttempts: cfg.MaxAttempts, owner: randomID()}
	c.saver.c = c
	err := s.retry(ctx, "open checkpoint", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `INSERT INTO checkpoint.checkpoints (name) VALUES ($1)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id`, name).Scan(&c.id)
	})
	if err != nil {
		return nil, err
	}
	if cfg.Fresh {
		if err := c.Clear(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// randomID is a runner's identity in the owner column, and a save's.
func randomID() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63))
}
