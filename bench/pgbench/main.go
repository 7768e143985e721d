// Command pgbench measures the Postgres backend against its targets, on a
// throwaway local cluster (Debian's postgresql package) or the server of -db:
//
//   - throughput: -procs processes of -workers Process workers each, over
//     -items no-op items of one checkpoint, against River (riverqueue/river
//     with riverpgxv5) inserting and completing as many no-op jobs with the
//     same processes and workers, on the same server;
//
//   - claims: round trips of claim statements per 100 items;
//
//   - resume: Open of a checkpoint of -resume completed keys, up to the
//     first item yielded, on Postgres against the files.
//
//     cd bench && go run ./pgbench            # all figures
//     cd bench && go run ./pgbench -items 20000 -resume 100000   # a smoke test
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/checkpoint-go/checkpoint/postgres"
	"github.com/checkpoint-go/checkpoint/postgres/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

var (
	items    = flag.Int("items", 100_000, "no-op items (and River jobs) in the throughput figures")
	procs    = flag.Int("procs", 4, "worker processes")
	workers  = flag.Int("workers", 16, "workers per process")
	resume   = flag.Int("resume", 10_000_000, "completed keys in the resume figure (0 skips it)")
	db       = flag.String("db", "", "a Postgres server (URL of a database whose tables may be dropped); default: a throwaway cluster")
	child    = flag.String("child", "", "internal: checkpoint or river")
	cooldown = flag.Duration("fetch-cooldown", 0, "River's FetchCooldown and FetchPollInterval (0: River's defaults, 100ms and 1s)")
	rounds   = flag.Int("rounds", 3, "rounds of checkpoint then River (and of files then Postgres for resume)")
	name     = flag.String("name", "bench", "internal: the checkpoint's name")
	noRiver  = flag.Bool("noriver", false, "skip River (for profiling)")
	cpuProf  = flag.String("cpuprofile", "", "write each checkpoint worker process's CPU profile to this path plus .PID")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pgbench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	if *child != "" {
		return runChild(ctx)
	}
	dbFor := func(name string) (string, error) { return *db, nil }
	if *db == "" {
		c, err := pgtest.Start()
		if err != nil {
			return err
		}
		defer c.Stop()
		dbFor = c.CreateDB
	}
	ckURL, err := dbFor("ckpt")
	if err != nil {
		return err
	}
	s, err := postgres.Open(ctx, ckURL)
	if err != nil {
		return err
	}
	defer s.Close()
	// Rounds alternate checkpoint and River on the same server; each round
	// starts from empty tables.
	var ckRates, rvRates, ratios, claimsPer100, commitsPer100 []float64
	var claims, claimed, commits, saves int64
	for round := range *rounds {
		name := fmt.Sprintf("bench%d", round)
		start := time.Now()
		outs, err := spawn("checkpoint", ckURL, name)
		if err != nil {
			return err
		}
		ckTime := time.Since(start)
		claims, claimed, commits, saves = 0, 0, 0, 0
		for _, o := range outs {
			var st postgres.Stats
			if err := json.Unmarshal([]byte(o), &st); err != nil {
				return fmt.Errorf("child said %q: %w", o, err)
			}
			claims += st.ClaimRoundTrips
			claimed += st.ClaimedKeys
			commits += st.SaveRoundTrips
			saves += st.Saves
		}
		var done, outcomes int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*), coalesce(sum(outcomes), 0) FROM checkpoint.items i
			JOIN checkpoint.checkpoints c ON c.id = i.checkpoint_id WHERE c.name = $1 AND state = 2`, name).Scan(&done, &outcomes); err != nil {
			return err
		}
		if done != *items || outcomes != *items {
			return fmt.Errorf("checkpoint: %d items completed with %d outcomes, want %d", done, outcomes, *items)
		}
		ckRate := float64(*items) / ckTime.Seconds()
		ckRates = append(ckRates, ckRate)
		claimsPer100 = append(claimsPer100, 100*float64(claims)/float64(*items))
		commitsPer100 = append(commitsPer100, 100*float64(commits)/float64(*items))
		line := fmt.Sprintf("round %d: checkpoint %.0f items/s (%.2fs), %d claims of %d keys, %d commits of %d saves",
			round+1, ckRate, ckTime.Seconds(), claims, claimed, commits, saves)
		if !*noRiver {
			rvURL, err := dbFor(fmt.Sprintf("river%d", round))
			if err != nil {
				return err
			}
			rvTime, err := riverRun(ctx, rvURL)
			if err != nil {
				return err
			}
			rvRate := float64(*items) / rvTime.Seconds()
			rvRates = append(rvRates, rvRate)
			ratios = append(ratios, ckRate/rvRate)
			line += fmt.Sprintf("; River %.0f jobs/s (%.2fs); ratio %.2fx", rvRate, rvTime.Seconds(), ckRate/rvRate)
		}
		fmt.Fprintln(os.Stderr, line)
	}

	fmt.Printf("| figure (median of %d rounds [min–max]) | value | reference | ratio | target |\n|---|---|---|---|---|\n", *rounds)
	if *noRiver {
		fmt.Printf("| Process on Postgres, %d processes x %d workers, %d no-op items | %s items/s | — | — | >= 10000/s |\n",
			*procs, *workers, *items, spread(ckRates, "%.0f"))
	} else {
		fmt.Printf("| Process on Postgres, %d processes x %d workers, %d no-op items | %s items/s | River insert+complete: %s jobs/s | %s | >= 10000/s, >= 1x |\n",
			*procs, *workers, *items, spread(ckRates, "%.0f"), spread(rvRates, "%.0f"), spread(ratios, "%.2fx"))
	}
	fmt.Printf("| claim round trips per 100 items | %s | — | — | <= 1 |\n", spread(claimsPer100, "%.2f"))
	fmt.Printf("| save commits per 100 items | %s | — | — | — |\n", spread(commitsPer100, "%.2f"))
	if *resume > 0 {
		pg, files, ratio, err := resumeFigure(ctx, s)
		if err != nil {
			return err
		}
		fmt.Printf("| resume of %d completed keys to the first item: Open on Postgres | %s s | Open on files: %s s | %s | <= 5x |\n",
			*resume, spread(pg, "%.2f"), spread(files, "%.2f"), spread(ratio, "%.2fx"))
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("\nload average at the end: %s\n", strings.Join(strings.Fields(string(la))[:3], " "))
	}
	return nil
}

// spread formats the median of v and its range.
func spread(v []float64, f string) string {
	if len(v) == 0 {
		return "—"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 1 {
		return fmt.Sprintf(f, s[0])
	}
	return fmt.Sprintf(f+" ["+f+"–"+f+"]", s[len(s)/2], s[0], s[len(s)-1])
}

// spawn runs the worker processes and returns what each printed.
func spawn(mode, url, name string) ([]string, error) {
	outs := make([]string, *procs)
	errs := make([]error, *procs)
	var wg sync.WaitGroup
	for i := range *procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-child", mode, "-db", url, "-items", strconv.Itoa(*items), "-workers", strconv.Itoa(*workers), "-cpuprofile", *cpuProf, "-name", name, "-fetch-cooldown", cooldown.String())
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			outs[i], errs[i] = strings.TrimSpace(string(out)), err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return outs, nil
}

func runChild(ctx context.Context) error {
	switch *child {
	case "checkpoint":
		if *cpuProf != "" {
			f, err := os.Create(fmt.Sprintf("%s.%d", *cpuProf, os.Getpid()))
			if err != nil {
				return err
			}
			defer f.Close()
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		s, err := postgres.Open(ctx, *db)
		if err != nil {
			return err
		}
		defer s.Close()
		r, err := checkpoint.Open[int, int](*name, checkpoint.WithBackend(s), checkpoint.WithLogger(quiet))
		if err != nil {
			return err
		}
		defer r.Close()
		seq := func(yield func(int) bool) {
			for i := range *items {
				if !yield(i) {
					return
				}
			}
		}
		if _, err := r.Process(ctx, seq, func(i int) int { return i },
			func(ctx context.Context, i int) (any, error) { return i, nil }, checkpoint.WithWorkers(*workers)); err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(s.Stats())
	case "river":
		return riverWorker(ctx)
	}
	return fmt.Errorf("unknown child %q", *child)
}

type noopArgs struct {
	I int `json:"i"`
}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// riverRun migrates River's tables, starts the worker processes, inserts
// the jobs with InsertMany and waits until all are completed. The time runs
// from the first insert to the last completion.
func riverRun(ctx context.Context, url string) (time.Duration, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return 0, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return 0, err
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	var spawnErr error
	wg.Go(func() { _, spawnErr = spawn("river", url, "") })
	time.Sleep(2 * time.Second) // the workers are up and listening
	start := time.Now()
	for lo := 0; lo < *items; lo += 10_000 {
		params := make([]river.InsertManyParams, 0, 10_000)
		for i := lo; i < min(lo+10_000, *items); i++ {
			params = append(params, river.InsertManyParams{Args: noopArgs{i}})
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return 0, err
		}
	}
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&n); err != nil {
			return 0, err
		}
		if n >= *items {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	wg.Wait()
	return took, spawnErr
}

// riverWorker works the queue until every job is completed.
func riverWorker(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, *db)
	if err != nil {
		return err
	}
	defer pool.Close()
	ws := river.NewWorkers()
	river.AddWorker(ws, &noopWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: *workers}},
		Workers:           ws,
		FetchCooldown:     *cooldown,
		FetchPollInterval: *cooldown,
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	for {
		time.Sleep(100 * time.Millisecond)
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&n); err != nil {
			return err
		}
		if n >= *items {
			break
		}
	}
	stop, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return client.Stop(stop)
}

// resumeFigure times Open up to the first item yielded, for a checkpoint of
// *resume completed keys and one more pending, on files then on Postgres in
// each of *rounds rounds.
func resumeFigure(ctx context.Context, s *postgres.Store) (pg, files, ratio []float64, err error) {
	n := *resume
	if _, err := s.Pool().Exec(ctx, `WITH c AS (
			INSERT INTO checkpoint.checkpoints (name) VALUES ('resume') RETURNING id)
		INSERT INTO checkpoint.items (checkpoint_id, key, state, outcomes, result)
		SELECT c.id, g::text, 2, 1, g::text::json FROM c, generate_series(0, $1 - 1) g`, n); err != nil {
		return nil, nil, nil, err
	}
	// A checkpoint resumed is not one written a second ago: autovacuum has
	// been through its rows (set their hint bits, counted them for the
	// planner). Without this, the first read of a million fresh rows writes
	// them all back.
	if _, err := s.Pool().Exec(ctx, `VACUUM (ANALYZE) checkpoint.items`); err != nil {
		return nil, nil, nil, err
	}
	dir, err := os.MkdirTemp("", "pgbench-")
	if err != nil {
		return nil, nil, nil, err
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "resume_results.jsonl"))
	if err != nil {
		return nil, nil, nil, err
	}
	buf := make([]byte, 0, 1<<20)
	ts := time.Now().Format("2006-01-02T15:04:05.000000-07:00")
	for i := range n {
		buf = fmt.Appendf(buf, `{"key":%d,"result":%d,"timestamp":"%s"}`+"\n", i, i, ts)
		if len(buf) > 1<<20-100 {
			f.Write(buf)
			buf = buf[:0]
		}
	}
	f.Write(buf)
	f.Close()
	keys := make([]int, n+1)
	for i := range keys {
		keys[i] = i
	}
	first := func(opts ...checkpoint.Option) (time.Duration, error) {
		start := time.Now()
		r, err := checkpoint.Open[int, int]("resume", opts...)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		for k := range r.Iterate(keys, func(i int) int { return i }) {
			if k != n {
				return 0, fmt.Errorf("first item %d, want %d", k, n)
			}
			break
		}
		return time.Since(start), r.Err()
	}
	// Once unmeasured: a file checkpoint being resumed has its meta file.
	if _, err := first(checkpoint.WithDir(dir)); err != nil {
		return nil, nil, nil, err
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf + ".resume")
		if err != nil {
			return nil, nil, nil, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	for round := range *rounds {
		f, err := first(checkpoint.WithDir(dir), checkpoint.WithLogger(quiet))
		if err != nil {
			return nil, nil, nil, err
		}
		p, err := first(checkpoint.WithBackend(s), checkpoint.WithLogger(quiet))
		if err != nil {
			return nil, nil, nil, err
		}
		fmt.Fprintf(os.Stderr, "resume round %d: Postgres %.2fs, files %.2fs, %.2fx\n", round+1, p.Seconds(), f.Seconds(), p.Seconds()/f.Seconds())
		pg, files, ratio = append(pg, p.Seconds()), append(files, f.Seconds()), append(ratio, p.Seconds()/f.Seconds())
	}
	return pg, files, ratio, nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
