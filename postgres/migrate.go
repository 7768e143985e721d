package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema: one set of tables, in the schema "checkpoint", for every
// checkpoint of every job. A checkpoint's name is a value in a row, never a
// part of a statement.
//
// Migrations are numbered and applied in order, each once, recorded in
// checkpoint.schema_migrations. They run in one transaction that first takes
// a transaction-level advisory lock, so that two machines starting at once
// apply them once: the second waits, then finds them applied. A database
// migrated by a newer version of this module is refused rather than
// downgraded.
var migrations = []string{
	// 1: checkpoints and their items.
	`CREATE TABLE checkpoint.checkpoints (
		id         bigserial PRIMARY KEY,
		name       text NOT NULL UNIQUE,
		created_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE checkpoint.items (
		checkpoint_id bigint NOT NULL REFERENCES checkpoint.checkpoints (id) ON DELETE CASCADE,
		key           text COLLATE "C" NOT NULL, -- the key's JSON text, as in the JSONL files
		state         smallint NOT NULL DEFAULT 0, -- 0 no outcome yet, 1 failed, 2 completed
		attempts      integer NOT NULL DEFAULT 0,  -- failures recorded
		outcomes      integer NOT NULL DEFAULT 0,  -- outcomes recorded (results and failures)
		result        json,
		error         text,
		owner         bigint,      -- the runner that claimed or saved it last
		lease_until   timestamptz, -- claimed until then by owner; NULL when not claimed
		save_id       bigint,      -- the latest save, so that a retried save counts once
		updated_at    timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (checkpoint_id, key)
	) WITH (fillfactor = 80);`,
}

// migrationLock is the advisory lock key that serialises migrations: "ckpt".
const migrationLock = 0x636b7074

// SchemaVersion is the schema version this module creates and expects.
var SchemaVersion = len(migrations)

// Migrate brings the database's checkpoint tables to SchemaVersion. Open
// calls it; it is safe to call from many machines at once, and again.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS checkpoint;
			CREATE TABLE IF NOT EXISTS checkpoint.schema_migrations (
				version    integer PRIMARY KEY,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM checkpoint.schema_migrations`).Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("the database's checkpoint schema is version %d, newer than this module's %d: upgrade the module", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO checkpoint.schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		return nil
	})
}
