package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/checkpoint-go/checkpoint"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Moving a job between one machine (JSONL files) and many (Postgres): Export
// writes a checkpoint from Postgres as the files of the JSONL format, and
// Import loads such files, Go- or Python-written, into Postgres.

// tsLayout is the files' timestamp (fixed width, with the zone).
const tsLayout = "2006-01-02T15:04:05.000000-07:00"

// ExportStats counts what Export wrote.
type ExportStats struct {
	Results, Errors int
}

// Export writes the checkpoint called name to dir as <name>_results.jsonl,
// <name>_errors.jsonl and <name>_meta.json, which a Runner opened with
// WithDir(dir) (or the Python library) reads. It refuses to overwrite
// existing files. Results come in the order they were completed. A failed key
// gets one errors line per recorded attempt, all with its latest message
// (Postgres keeps only that), so that WithMaxAttempts counts the same; a
// completed key gets its result only.
func Export(ctx context.Context, s *Store, name, dir string) (ExportStats, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM checkpoint.checkpoints WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return ExportStats{}, fmt.Errorf("postgres: %w: %q", checkpoint.ErrNoCheckpoint, name)
	}
	if err != nil {
		return ExportStats{}, err
	}
	return export(ctx, s.pool, id, name, dir)
}

// Export is Export through a Reader: it needs only the right to read.
func (r *Reader) Export(ctx context.Context, name, dir string) (ExportStats, error) {
	id, err := r.id(ctx, name)
	if err != nil {
		return ExportStats{}, err
	}
	return export(ctx, r.pool, id, name, dir)
}

// export reads in one read-only snapshot, so that a job running meanwhile
// cannot make a key show in both files or in neither.
func export(ctx context.Context, pool *pgxpool.Pool, id int64, name, dir string) (ExportStats, error) {
	var st ExportStats
	if name == "" || name == "." || strings.ContainsAny(name, "/\\\x00") || strings.Contains(name, "..") {
		return st, fmt.Errorf("postgres: checkpoint name %q cannot be a file name: it has a path separator or \"..\"", name)
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	paths := [3]string{
		filepath.Join(dir, name+"_results.jsonl"),
		filepath.Join(dir, name+"_errors.jsonl"),
		filepath.Join(dir, name+"_meta.json"),
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return st, fmt.Errorf("postgres: %s exists; export into an empty folder", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, err
	}
	var first, last time.Time
	seen := func(t time.Time) {
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	err = writeAtomic(paths[0], func(w *bufio.Writer) error {
		rows, err := tx.Query(ctx, `SELECT key, result::text, updated_at FROM checkpoint.items
			WHERE checkpoint_id = $1 AND state = 2 ORDER BY updated_at, key`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var key, res string
			var at time.Time
			if err := rows.Scan(&key, &res, &at); err != nil {
				return err
			}
			seen(at)
			fmt.Fprintf(w, `{"key":%s,"result":%s,"timestamp":"%s"}`+"\n", key, compact(res), at.Local().Format(tsLayout))
			st.Results++
		}
		return rows.Err()
	})
	if err != nil {
		return st, err
	}
	err = writeAtomic(paths[1], func(w *bufio.Writer) error {
		rows, err := tx.Query(ctx, `SELECT key, error, attempts, updated_at FROM checkpoint.items
			WHERE checkpoint_id = $1 AND state = 1 ORDER BY updated_at, key`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var key, msg string
			var attempts int
			var at time.Time
			if err := rows.Scan(&key, &msg, &attempts, &at); err != nil {
				return err
			}
			seen(at)
			m, _ := json.Marshal(msg)
			for a := 1; a <= max(attempts, 1); a++ {
				// Earlier attempts a microsecond apart before the latest.
				ts := at.Add(time.Duration(a-max(attempts, 1)) * time.Microsecond)
				fmt.Fprintf(w, `{"key":%s,"error":%s,"attempt":%d,"timestamp":"%s"}`+"\n", key, m, a, ts.Local().Format(tsLayout))
			}
			st.Errors++
		}
		return rows.Err()
	})
	if err != nil {
		return st, err
	}
	if first.IsZero() {
		first, last = time.Now(), time.Now()
	}
	meta, _ := json.MarshalIndent(map[string]any{
		"experiment_name": name,
		"started_at":      first.Local().Format(tsLayout),
		"last_updated":    last.Local().Format(tsLayout),
		"total_items":     st.Results + st.Errors,
		"completed_items": st.Results,
		"failed_items":    st.Errors,
		"schema_version":  "1.0.0",
	}, "", "  ")
	return st, writeAtomic(paths[2], func(w *bufio.Writer) error {
		_, err := w.Write(append(meta, '\n'))
		return err
	})
}

func compact(res string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(res)) != nil {
		return res
	}
	return b.String()
}

// writeAtomic writes path through a synced temporary file and a rename.
func writeAtomic(path string, fill func(w *bufio.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ImportStats counts what Import loaded.
type ImportStats struct {
	Lines     int // records read
	Completed int // keys whose latest outcome is a result
	Failed    int // keys whose latest outcome is an error
}

// ImportOptions adjust Import.
type ImportOptions struct {
	// NumberKeys turns keys written as strings of digits ("42", as the
	// Python library writes every key) into JSON numbers (42), as a Go
	// runner with integer keys writes and claims them.
	NumberKeys bool
}

type imported struct {
	done     bool
	result   json.RawMessage
	msg      string
	attempts int
	at       time.Time
}

// Import loads the JSONL checkpoint called name in dir (written by a Runner
// or by the Python library) into the Postgres checkpoint of the same name,
// in one transaction. The latest outcome of each key wins, by timestamp
// across the two files, as when a Runner opens them; a failed key keeps the
// number of errors lines as its attempts. Keys already in Postgres take the
// imported outcome.
func Import(ctx context.Context, s *Store, dir, name string, opts ImportOptions) (ImportStats, error) {
	var st ImportStats
	keys := make(map[string]*imported)
	var order []string
	found := false
	for _, file := range []string{"_errors.jsonl", "_results.jsonl"} {
		path := filepath.Join(dir, name+file)
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return st, err
		}
		found = true
		err = readLines(f, func(lineNo int, line []byte) error {
			var rec struct {
				Key       json.RawMessage  `json:"key"`
				Result    *json.RawMessage `json:"result"`
				Error     *string          `json:"error"`
				Timestamp string           `json:"timestamp"`
			}
			if err := json.Unmarshal(line, &rec); err != nil || rec.Key == nil {
				return fmt.Errorf("%s:%d: not a record", path, lineNo)
			}
			key, err := canonicalKey(rec.Key, opts.NumberKeys)
			if err != nil {
				return fmt.Errorf("%s:%d: %w", path, lineNo, err)
			}
			at := parseTime(rec.Timestamp)
			st.Lines++
			k := keys[key]
			if k == nil {
				k = &imported{}
				keys[key] = k
				order = append(order, key)
			}
			switch {
			case rec.Error != nil:
				k.attempts++
				if !k.at.After(at) || k.at.IsZero() {
					k.done, k.msg, k.result, k.at = false, *rec.Error, nil, at
				}
			case rec.Result != nil:
				if !at.Before(k.at) || k.at.IsZero() { // a tie goes to the result, as in Open
					k.done, k.result, k.at = true, *rec.Result, at
				}
			}
			return nil
		})
		f.Close()
		if err != nil {
			return st, err
		}
	}
	if !found {
		return st, fmt.Errorf("postgres: no %s_results.jsonl or %s_errors.jsonl in %s", name, name, dir)
	}
	rows := make([][]any, 0, len(order))
	for _, key := range order {
		k := keys[key]
		if k.done {
			st.Completed++
			rows = append(rows, []any{key, int16(stateCompleted), k.attempts, string(k.result), nil, k.at})
		} else {
			st.Failed++
			rows = append(rows, []any{key, int16(stateFailed), k.attempts, nil, k.msg, k.at})
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO checkpoint.checkpoints (name) VALUES ($1)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id`, name).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE checkpoint_import (
			key text COLLATE "C", state smallint, attempts integer, result text, error text, updated_at timestamptz
		) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"checkpoint_import"},
			[]string{"key", "state", "attempts", "result", "error", "updated_at"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO checkpoint.items AS i
			(checkpoint_id, key, state, attempts, outcomes, result, error, updated_at)
			SELECT $1, key, state, attempts, 1, result::json, error, updated_at FROM checkpoint_import
			ON CONFLICT (checkpoint_id, key) DO UPDATE SET
				state = EXCLUDED.state, attempts = EXCLUDED.attempts, outcomes = i.outcomes + 1,
				result = EXCLUDED.result, error = EXCLUDED.error, owner = NULL, lease_until = NULL,
				save_id = NULL, updated_at = EXCLUDED.updated_at`, id)
		return err
	})
	return st, err
}

func readLines(r io.Reader, fn func(lineNo int, line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// parseTime reads the files' timestamps: ours (with a zone) and Python's
// naive local ones (microseconds omitted when zero).
func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t
		}
	}
	return time.Time{}
}

// canonicalKey writes a key's JSON as a Runner encodes it, so that imported
// keys match the keys runners claim: strings with raw UTF-8 and only the
// escapes the runner writes, numbers as they are, anything else compacted.
func canonicalKey(raw json.RawMessage, numberKeys bool) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		if numberKeys {
			if _, err := strconv.ParseInt(s, 10, 64); err == nil {
				return s, nil
			}
		}
		return string(appendJSONString(nil, s)), nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	return b.String(), nil
}

// appendJSONString is the core's encoding of a string key (record.go).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
