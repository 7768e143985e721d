package postgres

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// Process commits outcomes while its workers go on, and claims go ahead of
// the items handed out: an item whose key came before still runs once, when
// the first is done or being saved, whether the duplicates are next to each
// other or a whole input apart.
func TestProcessDuplicateKeysRunOnce(t *testing.T) {
	const n = 2000
	var items []int
	for i := range n {
		items = append(items, i, i, i)
	}
	items = append(items, items...)
	s := openStore(t, "")
	r := open[int](t, s, "dups")
	runs := make([]atomic.Int32, n)
	sum, err := r.Process(context.Background(), slices.Values(items), ident,
		func(ctx context.Context, i int) (any, error) {
			runs[i].Add(1)
			return i, nil
		}, checkpoint.WithWorkers(16))
	if err != nil {
		t.Fatal(err)
	}
	for i := range runs {
		if c := runs[i].Load(); c != 1 {
			t.Fatalf("item %d ran %d times", i, c)
		}
	}
	if sum.Succeeded != n || sum.Skipped != len(items)-n {
		t.Fatalf("summary %+v, want %d succeeded, %d skipped", sum, n, len(items)-n)
	}
	var rows, outcomes int
	if err := s.Pool().QueryRow(context.Background(),
		`SELECT count(*), sum(outcomes) FROM checkpoint.items WHERE state = 2`).Scan(&rows, &outcomes); err != nil {
		t.Fatal(err)
	}
	if rows != n || outcomes != n {
		t.Fatalf("%d rows with %d outcomes, want %d", rows, outcomes, n)
	}
}

// A result JSON cannot hold is the item's failure, as with files, although
// Process sends its saves on without waiting.
func TestProcessUnencodableResultFails(t *testing.T) {
	s := openStore(t, "")
	r := open[int](t, s, "enc")
	items := []int{1, 2, 3, 4, 5, 6}
	sum, err := r.Process(context.Background(), slices.Values(items), ident,
		func(ctx context.Context, i int) (any, error) {
			if i%3 == 0 {
				return make(chan int), nil
			}
			return i, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 4 || sum.Failed != 2 {
		t.Fatalf("summary %+v, want 4 succeeded, 2 failed", sum)
	}
	fails := r.AllErrors()
	if len(fails) != 2 || fails[0].Key != 3 || fails[1].Key != 6 {
		t.Fatalf("AllErrors = %+v", fails)
	}
}

// When Postgres refuses the saves, Process stops and returns the error, and
// its summary counts as succeeded only the items whose result is committed.
func TestProcessSaveFailureStops(t *testing.T) {
	s := openStore(t, "")
	r := open[int](t, s, "refuse")
	items := make([]int, 20000)
	for i := range items {
		items[i] = i
	}
	var once atomic.Bool
	done := make(chan struct{})
	var sum checkpoint.Summary
	var err error
	go func() {
		defer close(done)
		sum, err = r.Process(context.Background(), slices.Values(items), ident,
			func(ctx context.Context, i int) (any, error) {
				if i >= 500 && once.CompareAndSwap(false, true) {
					// From now on no row may become completed. Not on
					// the item's ctx: the ALTER commits, other workers'
					// saves then fail and Process cancels ctx, which can
					// come before this call has read its reply.
					if _, err := s.Pool().Exec(context.Background(), `ALTER TABLE checkpoint.items
						ADD CONSTRAINT refuse CHECK (state <> 2) NOT VALID`); err != nil {
						t.Error(err)
					}
				}
				return i, nil
			}, checkpoint.WithWorkers(16))
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Process did not return after its saves failed")
	}
	if err == nil || !errors.Is(err, checkpoint.ErrBackend) {
		t.Fatalf("Process returned %v, want a backend error", err)
	}
	var committed int
	if err := s.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM checkpoint.items WHERE state = 2`).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != committed || committed == 0 || committed == len(items) {
		t.Fatalf("summary %+v, %d results committed", sum, committed)
	}
}

// Open loads the outcomes of a checkpoint: completed at the first attempt,
// completed after failures, and failed, each counted as such.
func TestOpenLoadsOutcomes(t *testing.T) {
	s := openStore(t, "")
	a := open[string](t, s, "load", checkpoint.WithMaxAttempts(3))
	saves := []struct {
		key  string
		fail bool
	}{{"first", false}, {"later", true}, {"later", false}, {"failed", true}, {"failed", true}, {`tab	"and\back`, false}}
	for _, sv := range saves {
		var err error
		if sv.fail {
			err = a.SaveError(sv.key, errors.New("no"))
		} else {
			err = a.SaveResult(sv.key, sv.key)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	b := open[string](t, s, "load", checkpoint.WithMaxAttempts(3))
	items := []string{"first", "later", "failed", `tab	"and\back`, "new"}
	got := slices.Collect(b.Iterate(items, ident))
	if want := []string{"failed", "new"}; !slices.Equal(got, want) {
		t.Fatalf("yielded %v, want %v", got, want)
	}
	if done, _ := b.Progress(); done != 3 {
		t.Fatalf("Progress done = %d, want 3", done)
	}
	st := s.Stats()
	// "first", "later" and the odd key are known done from the load: only
	// "failed" and "new" are claimed.
	if st.ClaimedKeys != 2 {
		t.Fatalf("claimed %d keys, want 2 (the completed ones are known from the load)", st.ClaimedKeys)
	}
}
