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
