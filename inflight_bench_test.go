package checkpoint

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkInFlightProcess is the cost of in-flight tracking on Process with
// 64 workers and a 1 ms call: compare on with off (the goal: at most 10%).
func BenchmarkInFlightProcess(b *testing.B) {
	for _, mode := range []struct {
		name string
		opt  Option
	}{{"off", WithoutInFlight()}, {"on", nil}} {
		b.Run(mode.name, func(b *testing.B) {
			opts := []Option{WithDir(b.TempDir()), flQuiet()}
			if mode.opt != nil {
				opts = append(opts, mode.opt)
			}
			r, err := Open[int, int]("bench", opts...)
			require.NoError(b, err)
			defer r.Close()
			b.ResetTimer()
			_, err = r.Process(context.Background(), procInts(b.N), procKey, func(ctx context.Context, i int) (any, error) {
				time.Sleep(time.Millisecond)
				return i, nil
			}, WithWorkers(64))
			require.NoError(b, err)
		})
	}
}

// BenchmarkInFlightIterate is the cost of WithInFlightIterate on a tight
// Iterate loop that saves every item (the goal: at most 25%), and on one
// that saves nothing (the tracking alone, next to a bare index lookup).
func BenchmarkInFlightIterate(b *testing.B) {
	for _, save := range []bool{true, false} {
		for _, track := range []bool{false, true} {
			name := "save"
			if !save {
				name = "nosave"
			}
			if track {
				name += "/on"
			} else {
				name += "/off"
			}
			b.Run(name, func(b *testing.B) {
				opts := []Option{WithDir(b.TempDir()), flQuiet()}
				if track {
					opts = append(opts, WithInFlightIterate())
				}
				r, err := Open[int, int]("bench", opts...)
				require.NoError(b, err)
				defer r.Close()
				items := make([]int, b.N)
				for i := range items {
					items[i] = i
				}
				b.ResetTimer()
				for i := range r.Iterate(items, procKey) {
					if save {
						if err := r.SaveResult(i, i); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
