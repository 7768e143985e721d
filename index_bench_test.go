package checkpoint

import (
	"testing"
	"time"
)

// BenchmarkIndexOpenUpsert is the index's share of Open, without the
// parsing: an index sized for n keys (reset, its table prefaulted), then
// every key upserted in file order in batches of loadBatchSize with hashes
// computed ahead, as Open's caller's goroutine does. It reports the two
// costs per key apart, in CPU time (the machine is shared): reset-ns/key
// and upsert-ns/key.
func BenchmarkIndexOpenUpsert(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n)+"/int64", func(b *testing.B) {
			benchIndexOpenUpsert(b, n, func(i int) int64 { return int64(i) })
		})
		b.Run(sizeName(n)+"/string", func(b *testing.B) {
			benchIndexOpenUpsert(b, n, benchStringKey)
		})
	}
}

func benchIndexOpenUpsert[K comparable](b *testing.B, n int, key func(int) K) {
	codec, err := newKeyCodec[K]()
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]K, n)
	hs := make([]uint64, n)
	for i := range keys {
		keys[i] = key(i)
		hs[i] = codec.hash(keys[i])
	}
	var resetT, upsertT time.Duration
	for b.Loop() {
		start := cpuTime()
		x := newIndex(codec.hash, n)
		mid := cpuTime()
		for i := 0; i < n; i += loadBatchSize {
			end := min(i+loadBatchSize, n)
			x.upsertBatch(keys[i:end], hs[i:end], func(k int, sp *slot) {
				*sp = sp.result(int64(i + k))
			})
		}
		upsertT += cpuTime() - mid
		resetT += mid - start
		if x.len() != n {
			b.Fatalf("%d keys, want %d", x.len(), n)
		}
		b.StopTimer()
		x.reset(0)
		b.StartTimer()
	}
	b.ReportMetric(float64(resetT.Nanoseconds())/float64(b.N)/float64(n), "reset-ns/key")
	b.ReportMetric(float64(upsertT.Nanoseconds())/float64(b.N)/float64(n), "upsert-ns/key")
}

// BenchmarkOpenCPU is BenchmarkOpen at 10M lines, reporting besides the
// wall clock the CPU time Open used on all its goroutines per line
// (cpu-ns/line): on a shared machine, the figure that other processes'
// turns inflate least.
func BenchmarkOpenCPU(b *testing.B) {
	const n = 10_000_000
	dir := b.TempDir()
	writeBenchResults(b, dir, "ints", n, func(i int) int64 { return int64(i) })
	writeBenchResults(b, dir, "strings", n, benchStringKey)
	b.Run("int64", func(b *testing.B) { benchOpenCPU[int64](b, dir, "ints", n) })
	b.Run("string", func(b *testing.B) { benchOpenCPU[string](b, dir, "strings", n) })
}

func benchOpenCPU[K comparable](b *testing.B, dir, name string, n int) {
	var cpu time.Duration
	for b.Loop() {
		start := cpuTime()
		r, err := Open[K, benchRecord](name, WithDir(dir), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - start
		b.StopTimer()
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	perSecond(b, n, "lines/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/line")
}
