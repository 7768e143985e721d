package checkpoint

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkInFlightProcess is the cost of in-flight tracking on Process with
// 64 workers and a 1 ms call: compare on with off (the goal: at most 10%).
// "writeat" writes the slots with WriteAt, as on Windows.
func BenchmarkInFlightProcess(b *testing.B) {
	for _, mode := range []struct {
		name string
		opt  Option
	}{{"off", WithoutInFlight()}, {"on", nil}, {"writeat", withoutMmap()}} {
		b.Run(mode.name, func(b *testing.B) {
			opts := []Option{WithDir(b.TempDir()), flQuiet()}
			if mode.opt != nil {
				opts = append(opts, mode.opt)
			}
			r, err := Open[int, int]("bench", opts...)
			require.NoError(b, err)
			defer r.Close()
			b.ResetTimer()
			cpu := cpuTime()
			_, err = r.Process(context.Background(), procInts(b.N), procKey, func(ctx context.Context, i int) (any, error) {
				time.Sleep(time.Millisecond)
				return i, nil
			}, WithWorkers(64))
			require.NoError(b, err)
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
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

// BenchmarkInFlightIterateRatio measures the goal for a tight loop
// directly: Iterate with an empty body over items that are all pending
// (nothing is saved, so every round does the same work), with
// WithInFlightIterate against without, on two runners, interleaved in
// rounds of 20,000 items each (off, on, on, off). It reports the medians
// over the rounds of the on/off ratios of CPU time and of wall time (the
// goal: at most 1.25), and the CPU time per item of each. "progress" is
// the same with BatchRunner.IterateWithProgress.
func BenchmarkInFlightIterateRatio(b *testing.B) {
	const roundLen = 20_000
	for _, loop := range []string{"iterate", "progress"} {
		b.Run(loop, func(b *testing.B) {
			var runners [2]*BatchRunner[int, int]
			for i, track := range []bool{false, true} {
				opts := []Option{WithDir(b.TempDir()), flQuiet(), WithProgressWriter(io.Discard)}
				if track {
					opts = append(opts, WithInFlightIterate())
				}
				r, err := OpenBatch[int, int]("bench", opts...)
				require.NoError(b, err)
				defer r.Close()
				runners[i] = r
			}
			items := make([]int, roundLen)
			for i := range items {
				items[i] = i
			}
			run := func(r *BatchRunner[int, int]) (cpu, wall time.Duration) {
				start, c := time.Now(), cpuTime()
				n := 0
				if loop == "iterate" {
					for range r.Iterate(items, procKey) {
						n++
					}
				} else {
					for range r.IterateWithProgress(items, procKey, "") {
						n++
					}
				}
				if n != roundLen {
					b.Fatalf("%d items, want %d", n, roundLen)
				}
				return cpuTime() - c, time.Since(start)
			}
			rounds := max(1, b.N/roundLen)
			var cpuRatio, wallRatio, offNs, onNs []float64
			b.ResetTimer()
			for range rounds {
				var cpu, wall [2]time.Duration
				for _, i := range []int{0, 1, 1, 0} {
					c, w := run(runners[i])
					cpu[i] += c
					wall[i] += w
				}
				cpuRatio = append(cpuRatio, float64(cpu[1])/float64(cpu[0]))
				wallRatio = append(wallRatio, float64(wall[1])/float64(wall[0]))
				offNs = append(offNs, float64(cpu[0])/2/roundLen)
				onNs = append(onNs, float64(cpu[1])/2/roundLen)
			}
			b.ReportMetric(median(cpuRatio), "cpu-on/off")
			b.ReportMetric(median(wallRatio), "wall-on/off")
			b.ReportMetric(median(offNs), "off-cpu-ns/item")
			b.ReportMetric(median(onNs), "on-cpu-ns/item")
		})
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
