package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/jackc/pgx/v5"
)

// attached is one runner's handle on one checkpoint: it implements
// checkpoint.BackendCheckpoint.
type attached struct {
	s           *Store
	id          int64 // checkpoint.checkpoints.id
	owner       int64 // this runner, in items.owner
	lease       time.Duration
	maxAttempts int
	saver       saver
}

const (
	stateFailed    = 1
	stateCompleted = 2
)

// Claim takes the leases in one statement. It first reads the rows of the
// keys that exist, without locks: the outcomes and leases it finds decide
// the rest, so that the keys completed or leased elsewhere (most of them,
// when many runners go through the same input) cost one index probe and
// never wait for another transaction. Keys without a row are inserted
// already leased (ON CONFLICT DO NOTHING: a key a concurrent claim inserted
// first is reported held). Existing rows that looked free (no outcome that
// ends them; no lease, a lease run out, or this runner's) are locked with
// FOR UPDATE SKIP LOCKED, which checks the conditions again on the latest
// version of the row, and leased; a row another transaction is writing is
// left to it and reported held. Keys go in byte order, so that concurrent
// claims and saves lock rows in the same order.
const claimSQL = `
WITH ex AS (
	SELECT i.key, i.state, i.attempts, i.lease_until, i.owner FROM checkpoint.items i
	WHERE i.checkpoint_id = $1 AND i.key = ANY($2::text[])
), ins AS (
	INSERT INTO checkpoint.items AS i (checkpoint_id, key, owner, lease_until)
	SELECT $1, u.k, $3, now() + $4::bigint * interval '1 microsecond'
	FROM unnest($2::text[]) AS u(k) WHERE NOT EXISTS (SELECT FROM ex WHERE ex.key = u.k) ORDER BY u.k
	ON CONFLICT (checkpoint_id, key) DO NOTHING
	RETURNING i.key
), cand AS (
	SELECT i.key FROM checkpoint.items i
	WHERE i.checkpoint_id = $1 AND i.key = ANY(ARRAY(
			SELECT ex.key FROM ex WHERE ex.state <> 2 AND ($5::int = 0 OR ex.attempts < $5::int)
				AND (ex.lease_until IS NULL OR ex.lease_until <= now() OR ex.owner = $3)))
		AND i.state <> 2 AND ($5::int = 0 OR i.attempts < $5::int)
		AND (i.lease_until IS NULL OR i.lease_until <= now() OR i.owner = $3)
	ORDER BY i.key
	FOR UPDATE SKIP LOCKED
), upd AS (
	UPDATE checkpoint.items i SET owner = $3, lease_until = now() + $4::bigint * interval '1 microsecond'
	FROM cand WHERE i.checkpoint_id = $1 AND i.key = cand.key
	RETURNING i.key
)
SELECT key, 0 FROM ins
UNION ALL SELECT key, 0 FROM upd
UNION ALL SELECT ex.key, CASE WHEN ex.state = 2 THEN 1 ELSE 2 END FROM ex
	WHERE ex.state = 2 OR ($5::int > 0 AND ex.attempts >= $5::int)`

func (c *attached) Claim(ctx context.Context, keys [][]byte, states []checkpoint.ClaimState) error {
	pos := make(map[string]int, len(keys))
	arg := make([]string, len(keys))
	for i, k := range keys {
		pos[string(k)] = i
		arg[i] = string(k)
	}
	return c.s.retry(ctx, "claim", func(ctx context.Context) error {
		for i := range states {
			states[i] = checkpoint.ClaimHeld
		}
		c.s.claimTrips.Add(1)
		c.s.claimKeys.Add(int64(len(keys)))
		rows, err := c.s.pool.Query(ctx, claimSQL, c.id, arg, c.owner, c.lease.Microseconds(), c.maxAttempts)
		if err != nil {
			return err
		}
		for rows.Next() {
			raw := rows.RawValues()
			i, ok := pos[string(raw[0])]
			if !ok {
				continue
			}
			var key string
			var kind int64
			if err := rows.Scan(&key, &kind); err != nil {
				return err
			}
			switch {
			case kind == 0:
				states[i] = checkpoint.ClaimTaken
			case states[i] == checkpoint.ClaimTaken:
			case kind == 1:
				states[i] = checkpoint.ClaimDone
			default:
				states[i] = checkpoint.ClaimExhausted
			}
		}
		return rows.Err()
	})
}

func (c *attached) Renew(ctx context.Context, keys [][]byte) error {
	return c.s.retry(ctx, "renew", func(ctx context.Context) error {
		_, err := c.s.pool.Exec(ctx, `UPDATE checkpoint.items
			SET lease_until = now() + $4::bigint * interval '1 microsecond'
			WHERE checkpoint_id = $1 AND key = ANY($2::text[]) AND owner = $3
				AND lease_until IS NOT NULL AND state <> 2`,
			c.id, texts(keys), c.owner, c.lease.Microseconds())
		return err
	})
}

func (c *attached) Release(ctx context.Context, keys [][]byte) error {
	return c.s.retry(ctx, "release", func(ctx context.Context) error {
		_, err := c.s.pool.Exec(ctx, `UPDATE checkpoint.items SET lease_until = NULL
			WHERE checkpoint_id = $1 AND key = ANY($2::text[]) AND owner = $3 AND lease_until IS NOT NULL`,
			c.id, texts(keys), c.owner)
		return err
	})
}

func texts(keys [][]byte) []string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = string(k)
	}
	return s
}

func (c *attached) SaveResult(ctx context.Context, key, result []byte, claimed bool) (bool, error) {
	r := &saveReq{key: string(key), result: string(result), claimed: claimed}
	c.saver.do(ctx, r)
	return r.saved, r.err
}

func (c *attached) SaveError(ctx context.Context, key []byte, msg string, claimed bool) (int, bool, error) {
	r := &saveReq{key: string(key), msg: msg, failed: true, claimed: claimed}
	c.saver.do(ctx, r)
	return r.attempts, r.saved, r.err
}

// Load streams the keys with an outcome with COPY: resuming a checkpoint of
// ten million keys reads them in one pass, without a row of Go values each.
// A key completed at its first attempt, the common case by far, comes with
// NULL (\N) in the second field, which costs the server no conversion; any
// other comes with state*loadStateUnit + attempts.
func (c *attached) Load(ctx context.Context, fn func(key []byte, s checkpoint.KeyState) error) error {
	return c.s.retry(ctx, "load", func(ctx context.Context) error {
		conn, err := c.s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		w := &copyRows{fn: func(f [][]byte) error {
			if len(f) != 2 {
				return fmt.Errorf("postgres: load: a row of %d fields", len(f))
			}
			if string(f[1]) == `\N` {
				return fn(unescapeCopy(f[0]), checkpoint.KeyState{Done: true})
			}
			v, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return fmt.Errorf("postgres: load: %w", err)
			}
			return fn(unescapeCopy(f[0]), checkpoint.KeyState{Done: v/loadStateUnit == stateCompleted, Attempts: int(v % loadStateUnit)})
		}}
		// The id is our own integer, not user text: formatting it in is safe.
		_, err = conn.Conn().PgConn().CopyTo(ctx, w, `COPY (SELECT key,
				CASE WHEN state = 2 AND attempts = 0 THEN NULL ELSE state * `+strconv.FormatInt(loadStateUnit, 10)+`::bigint + attempts END
			FROM checkpoint.items WHERE checkpoint_id = `+strconv.FormatInt(c.id, 10)+` AND state > 0) TO STDOUT`)
		if err == nil {
			err = w.flush()
		}
		return err
	})
}

// loadStateUnit separates state from attempts in Load's second field.
const loadStateUnit = 10_000_000_000

// copyRows splits COPY's text output into rows and fields.
type copyRows struct {
	fn   func(fields [][]byte) error
	buf  []byte
	flds [][]byte
	err  error
}

func (w *copyRows) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	i := 0
	for {
		j := bytes.IndexByte(w.buf[i:], '\n')
		if j < 0 {
			break
		}
		w.flds = w.flds[:0]
		for f := range bytes.SplitSeq(w.buf[i:i+j], []byte{'\t'}) {
			w.flds = append(w.flds, f)
		}
		if err := w.fn(w.flds); err != nil {
			w.err = err
			return 0, err
		}
		i += j + 1
	}
	w.buf = append(w.buf[:0], w.buf[i:]...)
	return len(p), nil
}

func (w *copyRows) flush() error {
	if len(w.buf) > 0 {
		return fmt.Errorf("postgres: load: a row without its end")
	}
	return w.err
}

// unescapeCopy undoes COPY's text escapes (a key's JSON text holds
// backslashes, never raw control characters).
func unescapeCopy(b []byte) []byte {
	if bytes.IndexByte(b, '\\') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		i++
		switch b[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'v':
			out = append(out, '\v')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

func (c *attached) Result(ctx context.Context, key []byte) ([]byte, bool, error) {
	var res []byte
	err := c.s.retry(ctx, "read result", func(ctx context.Context) error {
		return c.s.pool.QueryRow(ctx, `SELECT result::text FROM checkpoint.items
			WHERE checkpoint_id = $1 AND key = $2 AND state = 2`, c.id, string(key)).Scan(&res)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return res, err == nil, err
}

func (c *attached) Results(ctx context.Context, fn func(key, result []byte) error) error {
	rows, err := c.s.pool.Query(ctx, `SELECT key, result::text FROM checkpoint.items
		WHERE checkpoint_id = $1 AND state = 2 ORDER BY updated_at, key`, c.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		if err := fn(raw[0], raw[1]); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (c *attached) Errors(ctx context.Context, fn func(f checkpoint.BackendFailure) error) error {
	rows, err := c.s.pool.Query(ctx, `SELECT key, error, attempts, updated_at FROM checkpoint.items
		WHERE checkpoint_id = $1 AND state = 1 ORDER BY updated_at, key`, c.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var f checkpoint.BackendFailure
		var key, msg string
		if err := rows.Scan(&key, &msg, &f.Attempts, &f.Time); err != nil {
			return err
		}
		f.Key, f.Error = []byte(key), msg
		if err := fn(f); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (c *attached) Clear(ctx context.Context) error {
	return c.s.retry(ctx, "clear", func(ctx context.Context) error {
		_, err := c.s.pool.Exec(ctx, `DELETE FROM checkpoint.items WHERE checkpoint_id = $1`, c.id)
		return err
	})
}

func (c *attached) Close() error { return nil }
