package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/checkpoint-go/checkpoint"
)

// Many goroutines saving at once: every save returns, is written, and the
// saves share commits.
func TestGroupCommitUnderLoad(t *testing.T) {
	s := openStore(t, "")
	cp, err := s.Attach(context.Background(), "groups", checkpoint.AttachConfig{Lease: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 64, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				key := []byte(fmt.Sprintf(`"%d-%d"`, g, i))
				if saved, err := cp.SaveResult(context.Background(), key, []byte(`1`), false); err != nil || !saved {
					t.Errorf("save %s: %v %v", key, saved, err)
					return
				}
			}
		})
	}
	wg.Wait()
	var n int
	s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM checkpoint.items WHERE state = 2`).Scan(&n)
	st := s.Stats()
	if n != goroutines*each || st.Saves != goroutines*each {
		t.Fatalf("%d rows, %d saves; want %d", n, st.Saves, goroutines*each)
	}
	if st.SaveRoundTrips >= st.Saves {
		t.Fatalf("%d commits for %d saves: no grouping", st.SaveRoundTrips, st.Saves)
	}
	t.Logf("%d saves in %d commits", st.Saves, st.SaveRoundTrips)
}
