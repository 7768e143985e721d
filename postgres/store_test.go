package postgres

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

func open[K comparable](t testing.TB, s *Store, name string, opts ...checkpoint.Option) *checkpoint.Runner[K, K] {
	t.Helper()
	r, err := checkpoint.Open[K, K](name, append([]checkpoint.Option{checkpoint.WithBackend(s), checkpoint.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func ident[K any](k K) K { return k }

func TestRunnerOnPostgres(t *testing.T) {
	s := openStore(t, "")
	r := open[int](t, s, "basics", checkpoint.WithMaxAttempts(2))
	items := []int{1, 2, 3, 4, 5, 3}
	var got []int
	for it := range r.Iterate(items, ident) {
		got = append(got, it)
		var err error
		if it%2 == 0 {
			err = r.SaveError(it, errors.New("even"))
		} else {
			err = r.SaveResult(it, map[string]int{"sq": it * it})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("yielded %v, want %v (the duplicate 3 skipped)", got, want)
	}
	if done, total := r.Progress(); done != 3 || total != 6 {
		t.Fatalf("Progress = %d, %d; want 3, 6", done, total)
	}
	var v map[string]int
	if found, err := r.Result(5, &v); err != nil || !found || v["sq"] != 25 {
		t.Fatalf("Result(5) = %v, %v, %v", found, err, v)
	}
	if found, err := r.Result(2, &v); err != nil || found {
		t.Fatalf("Result(2) = %v, %v; want not found", found, err)
	}
	var keys []int
	for k, res := range r.AllResults() {
		keys = append(keys, k)
		if len(res) == 0 {
			t.Fatal("empty result")
		}
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []int{1, 3, 5}) {
		t.Fatalf("AllResults keys %v", keys)
	}
	fails := r.AllErrors()
	if len(fails) != 2 || fails[0].Error != "even" || fails[0].Attempts != 1 {
		t.Fatalf("AllErrors = %+v", fails)
	}
	r.Close()

	// A second runner (another machine) skips what is done, retries the
	// failures once more, then gives up on them (WithMaxAttempts(2)).
	for round, want := range [][]int{{2, 4}, nil} {
		r2 := open[int](t, s, "basics", checkpoint.WithMaxAttempts(2))
		got = nil
		for it := range r2.Iterate(items, ident) {
			got = append(got, it)
			if err := r2.SaveError(it, errors.New("still even")); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d yielded %v, want %v", round, got, want)
		}
		r2.Close()
	}
	r3 := open[int](t, s, "basics", checkpoint.WithMaxAttempts(2))
	if f := r3.AllErrors(); len(f) != 2 || f[1].Attempts != 2 {
		t.Fatalf("after two runs AllErrors = %+v", f)
	}
	if err := r3.Clear(); err != nil {
		t.Fatal(err)
	}
	// Nothing saved: the duplicate 3 comes again, as with files.
	if n := len(slices.Collect(r3.Iterate(items, ident))); n != 6 {
		t.Fatalf("after Clear %d items yielded, want 6", n)
	}
}

// Names are values in rows: a name that would break a statement spliced
// together from strings is just a name.
func TestNameIsNeverSQL(t *testing.T) {
	s := openStore(t, "")
	name := `x"; DROP TABLE results; --`
	for _, n := range []string{name, `y'); DROP TABLE checkpoint.items; --`, "results"} {
		r := open[string](t, s, n)
		if err := r.SaveResult("k", n); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	r := open[string](t, s, name)
	var v string
	if found, err := r.Result("k", &v); err != nil || !found || v != name {
		t.Fatalf("Result = %v, %v, %q", found, err, v)
	}
	var names []string
	rows, err := s.Pool().Query(context.Background(), `SELECT name FROM checkpoint.checkpoints ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	if rows.Err() != nil || len(names) != 3 || names[0] != name {
		t.Fatalf("checkpoints %q, %v", names, rows.Err())
	}
}

// Many machines starting at once on an empty database: every one opens,
// and each migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	url := newDB(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(context.Background(), url, WithLogger(quiet))
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, url)
	var n, max int
	if err := s.Pool().QueryRow(context.Background(),
		`SELECT count(*), max(version) FROM checkpoint.schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion || max != SchemaVersion {
		t.Fatalf("%d migrations recorded, latest %d; want %d", n, max, SchemaVersion)
	}
}

// A runner that lost its lease and still finishes does not record a second
// completion: the first completion wins, and the late result is dropped.
func TestLateFinisherAfterLeaseExpiry(t *testing.T) {
	s := openStore(t, "")
	lease := 300 * time.Millisecond
	a := open[string](t, s, "late", checkpoint.WithLease(lease))
	b := open[string](t, s, "late", checkpoint.WithLease(lease))

	// a claims "k" and stalls (its renewals stopped: as if cut off) ...
	ca, _ := s.Attach(context.Background(), "late", checkpoint.AttachConfig{Lease: lease})
	st := make([]checkpoint.ClaimState, 1)
	if err := ca.Claim(context.Background(), [][]byte{[]byte(`"k"`)}, st); err != nil || st[0] != checkpoint.ClaimTaken {
		t.Fatalf("claim: %v %v", err, st)
	}
	// ... b finds it held, and takes it once the lease is over.
	start := time.Now()
	var got []string
	for it := range b.Iterate([]string{"k"}, ident) {
		got = append(got, it)
		if err := b.SaveResult(it, "from b"); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || time.Since(start) < lease/2 {
		t.Fatalf("b got %v after %v; want k after the lease", got, time.Since(start))
	}
	// The stalled runner finishes late.
	if saved, err := ca.SaveResult(context.Background(), []byte(`"k"`), []byte(`"from a"`), true); err != nil || saved {
		t.Fatalf("late save: saved=%v err=%v; want dropped", saved, err)
	}
	var res string
	var outcomes int
	if err := s.Pool().QueryRow(context.Background(), `SELECT result::text, outcomes FROM checkpoint.items WHERE key = '"k"'`).Scan(&res, &outcomes); err != nil {
		t.Fatal(err)
	}
	if res != `"from b"` || outcomes != 1 {
		t.Fatalf("stored %s with %d outcomes; want b's result, one outcome", res, outcomes)
	}
	// A direct save of a key not claimed (a fix by hand) replaces it: latest wins.
	if err := a.SaveResult("k", "fixed"); err != nil {
		t.Fatal(err)
	}
	var v string
	if _, err := b.Result("k", &v); err != nil || v != "fixed" {
		t.Fatalf("after a direct save Result = %q, %v", v, err)
	}
}

// When the late finisher saves before the one that took over, its result is
// the completion and the other is dropped.
func TestLateFinisherFirst(t *testing.T) {
	s := openStore(t, "")
	lease := 200 * time.Millisecond
	ctx := context.Background()
	cfg := checkpoint.AttachConfig{Lease: lease}
	a, _ := s.Attach(ctx, "race", cfg)
	b, _ := s.Attach(ctx, "race", cfg)
	k := [][]byte{[]byte(`1`)}
	st := make([]checkpoint.ClaimState, 1)
	if a.Claim(ctx, k, st); st[0] != checkpoint.ClaimTaken {
		t.Fatal("a did not claim")
	}
	if b.Claim(ctx, k, st); st[0] != checkpoint.ClaimHeld {
		t.Fatalf("b: %v, want held", st[0])
	}
	time.Sleep(lease + 50*time.Millisecond)
	if b.Claim(ctx, k, st); st[0] != checkpoint.ClaimTaken {
		t.Fatalf("b after expiry: %v, want taken", st[0])
	}
	if saved, err := a.SaveResult(ctx, k[0], []byte(`"a"`), true); !saved || err != nil {
		t.Fatalf("a: %v %v", saved, err)
	}
	if saved, err := b.SaveResult(ctx, k[0], []byte(`"b"`), true); saved || err != nil {
		t.Fatalf("b: %v %v; want dropped", saved, err)
	}
	if _, saved, err := b.SaveError(ctx, k[0], "boom", true); saved || err != nil {
		t.Fatalf("b's failure: %v %v; want dropped", saved, err)
	}
	res, _, _ := b.Result(ctx, k[0])
	if string(res) != `"a"` {
		t.Fatalf("stored %s, want a's", res)
	}
}

// Two runners share the items: each item runs once, and together they do
// all of them.
func TestTwoRunnersShareTheWork(t *testing.T) {
	s := openStore(t, "")
	const n = 3000
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	runs := make([]atomic.Int32, n)
	// Each runner's calls wait until both runners have made one. Without
	// that, the runner that started first could claim in ever larger
	// batches and do every item before the other claimed any (which is
	// right, but not what this test is about). A runner that waits holds a
	// few batches at most, so the other one gets items.
	var arrived atomic.Int32
	var entered [2]sync.Once
	both := make(chan struct{})
	var wg sync.WaitGroup
	sums := make([]checkpoint.Summary, 2)
	for w := range 2 {
		r := open[int](t, s, "share")
		wg.Go(func() {
			var err error
			sums[w], err = r.Process(context.Background(), slices.Values(items), ident,
				func(ctx context.Context, i int) (any, error) {
					entered[w].Do(func() {
						if arrived.Add(1) == 2 {
							close(both)
						}
					})
					select {
					case <-both:
					case <-time.After(30 * time.Second):
						t.Error("the other runner ran nothing in 30 s")
						return nil, errors.New("the other runner ran nothing in 30 s")
					}
					runs[i].Add(1)
					return i, nil
				}, checkpoint.WithWorkers(8))
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range runs {
		if c := runs[i].Load(); c != 1 {
			t.Fatalf("item %d ran %d times", i, c)
		}
	}
	if sums[0].Succeeded+sums[1].Succeeded != n || sums[0].Succeeded == 0 || sums[1].Succeeded == 0 {
		t.Fatalf("summaries %+v, %+v", sums[0], sums[1])
	}
	st := s.Stats()
	if st.ClaimedKeys > 0 && float64(n)/float64(st.ClaimRoundTrips) < 10 {
		t.Logf("stats %+v", st)
	}
}

// Breaking out of a loop gives back the items claimed but not done, so that
// others take them at once rather than after the lease.
func TestBreakReleasesClaims(t *testing.T) {
	s := openStore(t, "")
	a := open[int](t, s, "brk", checkpoint.WithLease(time.Hour))
	items := []int{1, 2, 3, 4, 5, 6, 7, 8}
	for it := range a.Iterate(items, ident) {
		a.SaveResult(it, it)
		break
	}
	b := open[int](t, s, "brk", checkpoint.WithLease(time.Hour))
	done := make(chan []int)
	go func() { done <- slices.Collect(b.Iterate(items, ident)) }()
	select {
	case got := <-done:
		if !slices.Equal(got, items[1:]) {
			t.Fatalf("b got %v", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("b waited for leases that a should have released")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db":           "postgres://u:xxxxx@h:5432/db",
		"postgres://u@h/db?password=secret":       "postgres://u@h/db?password=xxxxx",
		"host=h user=u password=secret dbname=db": "host=h user=u password=xxxxx dbname=db",
		"postgres://u@h/db":                       "postgres://u@h/db",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := Open(context.Background(), "postgres://u:secret@127.0.0.1:1/db?connect_timeout=1", WithRetryFor(0))
	if err == nil || contains(err.Error(), "secret") {
		t.Fatalf("error %v shows the password", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A BatchRunner's loop with a progress bar claims too: two of them share
// the items.
func TestBatchRunnerShares(t *testing.T) {
	s := openStore(t, "")
	items := make([]int, 500)
	for i := range items {
		items[i] = i
	}
	var mu sync.Mutex
	seen := make(map[int]int)
	var wg sync.WaitGroup
	for range 2 {
		b, err := checkpoint.OpenBatch[int, int]("bar", checkpoint.WithBackend(s), checkpoint.WithLogger(quiet),
			checkpoint.WithProgressWriter(io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		wg.Go(func() {
			for _, it := range b.IterateWithProgress(items, ident, "") {
				mu.Lock()
				seen[it]++
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				if err := b.SaveResult(it, it); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != len(items) {
		t.Fatalf("%d items done, want %d", len(seen), len(items))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("item %d yielded %d times", k, n)
		}
	}
}
