package main

import (
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite"
)

// Target 6: the workload a user would otherwise write by hand, with SQLite
// or bbolt: save n items one by one as they finish, then reopen and skip
// them all. Each system runs at a stated durability level.

// store is one system under the workload.
type store interface {
	save(i int64, r Record) error
	close() error
}

type system struct {
	name       string
	durability string
	create     func(dir string) (store, error)
	// reopenSkip reopens dir and checks that every item in [0, n) is done,
	// the way a resumed run would.
	reopenSkip func(dir string, n int) error
}

// workload returns items saved per second and items skipped per second
// (reopen included).
func workload(s system, dir string, n int) (saveRate, skipRate float64, err error) {
	st, err := s.create(dir)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for i := range int64(n) {
		if err := st.save(i, newRecord(i)); err != nil {
			st.close()
			return 0, 0, fmt.Errorf("%s: save: %w", s.name, err)
		}
	}
	saveRate = float64(n) / time.Since(start).Seconds()
	if err := st.close(); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	if err := s.reopenSkip(dir, n); err != nil {
		return 0, 0, fmt.Errorf("%s: reopen: %w", s.name, err)
	}
	skipRate = float64(n) / time.Since(start).Seconds()
	return saveRate, skipRate, nil
}

// checkpoint with its default policy.
type cpStore struct {
	r *checkpoint.Runner[int64, int64]
}

func (c cpStore) save(i int64, r Record) error { return c.r.SaveResult(i, r) }
func (c cpStore) close() error                 { return c.r.Close() }

func checkpointSystem(syncAlways bool) system {
	name, durability, policy := "checkpoint (default)", "one write() per record, no fsync: survives kill -9; a power cut may lose the last moments", checkpoint.SyncNone
	if syncAlways {
		name, durability, policy = "checkpoint SyncAlways", "fdatasync before SaveResult returns: survives a power cut", checkpoint.SyncAlways
	}
	return system{
		name:       name,
		durability: durability,
		create: func(dir string) (store, error) {
			r, err := open[int64](dir, "cmp", checkpoint.WithFresh(), checkpoint.WithSync(policy))
			return cpStore{r}, err
		},
		reopenSkip: func(dir string, n int) error {
			r, err := open[int64](dir, "cmp")
			if err != nil {
				return err
			}
			items := make([]int64, n)
			for i := range items {
				items[i] = int64(i)
			}
			for range r.Iterate(items, func(v int64) int64 { return v }) {
				r.Close()
				return errors.New("a saved item was yielded")
			}
			return errors.Join(r.Err(), r.Close())
		},
	}
}

// SQLite through modernc.org/sqlite (pure Go), one INSERT per item in its
// own transaction, as a user would write it.
type sqliteStore struct {
	db  *sql.DB
	ins *sql.Stmt
}

func (s sqliteStore) save(i int64, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.ins.Exec(i, b, time.Now().Format(time.RFC3339Nano))
	return err
}

func (s sqliteStore) close() error { return errors.Join(s.ins.Close(), s.db.Close()) }

func sqliteSystem(synchronous string) system {
	durability := "WAL, synchronous=NORMAL: no fsync per commit; survives kill -9; a power cut may lose the last commits"
	if synchronous == "FULL" {
		durability = "WAL, synchronous=FULL: fsync per commit; survives a power cut"
	}
	dsn := func(dir string) string {
		return "file:" + filepath.Join(dir, "cmp.db") + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + synchronous + ")"
	}
	return system{
		name:       "SQLite " + synchronous,
		durability: durability,
		create: func(dir string) (store, error) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			db, err := sql.Open("sqlite", dsn(dir))
			if err != nil {
				return nil, err
			}
			db.SetMaxOpenConns(1)
			if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS results (key INTEGER PRIMARY KEY, result TEXT NOT NULL, ts TEXT NOT NULL)`); err != nil {
				db.Close()
				return nil, err
			}
			ins, err := db.Prepare(`INSERT OR REPLACE INTO results (key, result, ts) VALUES (?, ?, ?)`)
			if err != nil {
				db.Close()
				return nil, err
			}
			return sqliteStore{db, ins}, nil
		},
		// The fast way to resume: load the done keys into a set, then skip.
		reopenSkip: func(dir string, n int) error {
			db, err := sql.Open("sqlite", dsn(dir))
			if err != nil {
				return err
			}
			defer db.Close()
			rows, err := db.Query(`SELECT key FROM results`)
			if err != nil {
				return err
			}
			done := make(map[int64]struct{}, n)
			for rows.Next() {
				var k int64
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				done[k] = struct{}{}
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return err
			}
			for i := range int64(n) {
				if _, ok := done[i]; !ok {
					return fmt.Errorf("key %d not saved", i)
				}
			}
			return nil
		},
	}
}

// bbolt, one Update transaction per item.
type boltStore struct{ db *bolt.DB }

var boltBucket = []byte("results")

func boltKey(i int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

func (s boltStore) save(i int64, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBucket).Put(boltKey(i), b)
	})
}

func (s boltStore) close() error { return s.db.Close() }

func boltSystem(noSync bool) system {
	name, durability := "bbolt", "fdatasync per Update: survives a power cut"
	if noSync {
		name, durability = "bbolt NoSync", "NoSync: no fsync; survives kill -9; a power cut may lose or damage recent commits"
	}
	openDB := func(dir string) (*bolt.DB, error) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		db, err := bolt.Open(filepath.Join(dir, "cmp.bolt"), 0o644, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return nil, err
		}
		db.NoSync = noSync
		return db, nil
	}
	return system{
		name:       name,
		durability: durability,
		create: func(dir string) (store, error) {
			db, err := openDB(dir)
			if err != nil {
				return nil, err
			}
			err = db.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucketIfNotExists(boltBucket)
				return err
			})
			if err != nil {
				db.Close()
				return nil, err
			}
			return boltStore{db}, nil
		},
		reopenSkip: func(dir string, n int) error {
			db, err := openDB(dir)
			if err != nil {
				return err
			}
			defer db.Close()
			return db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(boltBucket)
				for i := range int64(n) {
					if b.Get(boltKey(i)) == nil {
						return fmt.Errorf("key %d not saved", i)
					}
				}
				return nil
			})
		},
	}
}

// figureCompare runs the workload on checkpoint and on the alternatives at
// two durability levels: no fsync per item (all survive kill -9, not a
// power cut), and fsync per item (all survive a power cut) on a smaller n,
// as that is bound by the disk's flush latency.
func figureCompare(tmp string, n, nSync int) ([]row, error) {
	cp := checkpointSystem(false)
	cpSave, cpSkip, err := workload(cp, filepath.Join(tmp, "cp"), n)
	if err != nil {
		return nil, err
	}
	var rows []row
	for _, alt := range []system{sqliteSystem("NORMAL"), boltSystem(true)} {
		save, skip, err := workload(alt, filepath.Join(tmp, alt.name), n)
		if err != nil {
			return nil, err
		}
		rows = append(rows,
			row{
				Figure: fmt.Sprintf("Save %s items one by one: checkpoint vs %s", sizeLabel(n), alt.name), Value: cpSave, Unit: "items/s",
				RefLabel: alt.name, Ref: save, Ratio: cpSave / save, Target: "≥ 1×", Pass: cpSave >= save,
				Note: "same durability: " + alt.durability,
			},
			row{
				Figure: fmt.Sprintf("Reopen and skip %s items: checkpoint vs %s", sizeLabel(n), alt.name), Value: cpSkip, Unit: "items/s",
				RefLabel: alt.name, Ref: skip, Ratio: cpSkip / skip, Target: "≥ 1×", Pass: cpSkip >= skip,
			})
	}
	// With a flush per item each system waits for the disk, which other
	// jobs on a shared machine also use: the three take turns, in rounds,
	// and each ratio is the median of the rounds' ratios.
	const syncRounds = 3
	cpSync := checkpointSystem(true)
	alts := []system{sqliteSystem("FULL"), boltSystem(false)}
	var cpRates []float64
	altRates := make([][]float64, len(alts))
	for round := range syncRounds {
		v, _, err := workload(cpSync, filepath.Join(tmp, fmt.Sprintf("cp-sync-%d", round)), nSync)
		if err != nil {
			return nil, err
		}
		cpRates = append(cpRates, v)
		for j, alt := range alts {
			v, _, err := workload(alt, filepath.Join(tmp, fmt.Sprintf("%s-sync-%d", alt.name, round)), nSync)
			if err != nil {
				return nil, err
			}
			altRates[j] = append(altRates[j], v)
		}
	}
	for j, alt := range alts {
		ratios := make([]float64, syncRounds)
		for k := range ratios {
			ratios[k] = cpRates[k] / altRates[j][k]
		}
		slices.Sort(ratios)
		cp, ref := slices.Clone(cpRates), slices.Clone(altRates[j])
		slices.Sort(cp)
		slices.Sort(ref)
		ratio := ratios[syncRounds/2]
		rows = append(rows, row{
			Figure: fmt.Sprintf("Save %s items one by one: checkpoint SyncAlways vs %s", sizeLabel(nSync), alt.name), Value: cp[syncRounds/2], Unit: "items/s",
			RefLabel: alt.name, Ref: ref[syncRounds/2], Ratio: ratio,
			Note: "same durability: " + alt.durability + "; checkpoint: " + cpSync.durability + "; one saver, so one flush per item for all three" +
				fmt.Sprintf("; %d interleaved rounds, ratio = median of the rounds' ratios (%.2f-%.2f), rates = medians", syncRounds, ratios[0], ratios[syncRounds-1]),
		})
		if strings.HasPrefix(alt.name, "SQLite") {
			rows[len(rows)-1].Target, rows[len(rows)-1].Pass = "≥ 1.0×", ratio >= 1
		}
	}
	return rows, nil
}
