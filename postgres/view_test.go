package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/jackc/pgx/v5"
)

// A Reader only reads: it creates no table in an empty database, and its
// connections refuse writes; names are values, whatever they hold.
func TestReaderReadsOnly(t *testing.T) {
	ctx := context.Background()
	url := newDB(t)
	r, err := OpenReader(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if list, err := r.Checkpoints(ctx); err != nil || len(list) != 0 {
		t.Fatalf("empty database: %v, %v", list, err)
	}
	if _, err := r.Checkpoint(ctx, "x"); !errors.Is(err, checkpoint.ErrNoCheckpoint) {
		t.Fatalf("Checkpoint in an empty database: %v, want ErrNoCheckpoint", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schema *string
	if err := conn.QueryRow(ctx, `SELECT to_regnamespace('checkpoint')::text`).Scan(&schema); err != nil || schema != nil {
		t.Fatalf("the Reader created the schema %v (%v)", schema, err)
	}

	s := openStore(t, url)
	name := `x"; DROP TABLE results; --`
	run := open[string](t, s, name)
	for _, k := range []string{"a", "b", "c"} {
		run.SaveResult(k, k)
	}
	run.SaveError("d", errors.New("boom"))
	run.Close()
	sum, err := r.Checkpoint(ctx, name)
	if err != nil || sum.Completed != 3 || sum.Failed != 1 || sum.Leased != 0 || sum.Name != name {
		t.Fatalf("Checkpoint: %+v, %v", sum, err)
	}
	if _, err := r.pool.Exec(ctx, `DELETE FROM checkpoint.items`); err == nil {
		t.Fatal("a Reader's connection deleted rows")
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM checkpoint.items`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("rows after the refused delete: %d, %v", n, err)
	}
}
