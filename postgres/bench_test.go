package postgres

import (
	"context"
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// BenchmarkProcessNoop: one runner, Process with 16 workers over b.N no-op
// items on a fresh checkpoint. Reports items/s, and claim round trips and
// save round trips per 100 items.
func BenchmarkProcessNoop(b *testing.B) {
	s := openStore(b, "")
	r, err := checkpoint.Open[int, int](fmt.Sprintf("bench-%d", b.N), checkpoint.WithBackend(s), checkpoint.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	items := func(yield func(int) bool) {
		for i := range b.N {
			if !yield(i) {
				return
			}
		}
	}
	b.ResetTimer()
	start := time.Now()
	sum, err := r.Process(context.Background(), iter.Seq[int](items), func(i int) int { return i },
		func(ctx context.Context, i int) (any, error) { return i, nil }, checkpoint.WithWorkers(16))
	if err != nil || sum.Succeeded != b.N {
		b.Fatalf("%+v %v", sum, err)
	}
	st := s.Stats()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
	b.ReportMetric(100*float64(st.ClaimRoundTrips)/float64(b.N), "claims/100items")
	b.ReportMetric(100*float64(st.SaveRoundTrips)/float64(b.N), "commits/100items")
}
