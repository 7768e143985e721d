package checkpoint

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Benchmarks for the performance targets of the README's Performance
// section. Every figure that has a target comes with its reference measured
// in the same run (machines are shared and noisy), so compare ratios. The
// large data sets (10 million lines) are only built when benchmarks run:
//
//	go test -run '^$' -bench . -benchtime 1x
//
// The bench/ module (cd bench && go run .) prints them all as one table,
// with SQLite and bbolt beside them.

// benchRecord is the small result saved by the benchmarks: about 100 bytes
// of JSON.
type benchRecord struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Score  float64  `json:"score"`
	Tags   []string `json:"tags"`
	Passed bool     `json:"passed"`
}

func newBenchRecord(i int64) benchRecord {
	return benchRecord{
		ID:     i,
		Name:   "item-" + strconv.FormatInt(i, 10),
		Score:  float64(i%1000) / 7,
		Tags:   []string{"alpha", "beta"},
		Passed: i%3 != 0,
	}
}

func benchStringKey(i int) string { return fmt.Sprintf("doc-%08d", i) }

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// writeBenchResults writes a results file of n records with keys key(0..n-1),
// byte for byte as SaveResult writes them, at buffered speed.
func writeBenchResults[K comparable](tb testing.TB, dir, name string, n int, key func(int) K) {
	tb.Helper()
	codec, err := newKeyCodec[K]()
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name+"_results.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	var line, kb []byte
	for i := range n {
		res, err := json.Marshal(newBenchRecord(int64(i)))
		if err != nil {
			tb.Fatal(err)
		}
		if kb, err = codec.encode(kb[:0], key(i)); err != nil {
			tb.Fatal(err)
		}
		line = appendResultLine(line[:0], kb, res, base.Add(time.Duration(i)*time.Microsecond))
		if _, err := w.Write(line); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

func benchSizes() []int {
	if testing.Short() {
		return []int{100_000}
	}
	return []int{1_000_000, 10_000_000}
}

func sizeName(n int) string {
	if n%1_000_000 == 0 {
		return strconv.Itoa(n/1_000_000) + "M"
	}
	return strconv.Itoa(n/1000) + "k"
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func perSecond(b *testing.B, count int, unit string) {
	b.ReportMetric(float64(count)*float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkSave is target 1: SaveResult against a bare json.Marshal plus
// one write per record on the same kind of file, from 1 and 8 goroutines.
// The record is boxed into an interface once, outside the loop, so that
// allocs/op is the library's own: 0 for SaveResult (the index's chunks,
// amortised over 65,536 keys, round down to 0).
func BenchmarkSave(b *testing.B) {
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d/SaveResult", g), func(b *testing.B) {
			r, err := Open[int64, int64]("save", WithDir(b.TempDir()), WithLogger(quietLog))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			var rec any = newBenchRecord(1)
			b.ReportAllocs()
			runSplit(b, g, func(i int64) error { return r.SaveResult(i, rec) })
		})
		b.Run(fmt.Sprintf("goroutines=%d/bare", g), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "bare.jsonl"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var rec any = newBenchRecord(1)
			b.ReportAllocs()
			runSplit(b, g, func(int64) error {
				line, err := json.Marshal(rec)
				if err != nil {
					return err
				}
				_, err = f.Write(append(line, '\n'))
				return err
			})
		})
	}
}

// runSplit runs b.N calls of fn over g goroutines, with distinct i.
func runSplit(b *testing.B, g int, fn func(i int64) error) {
	b.Helper()
	var next int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, g)
	b.ResetTimer()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next += 64
				mu.Unlock()
				if i >= int64(b.N) {
					return
				}
				for j := i; j < min(i+64, int64(b.N)); j++ {
					if err := fn(j); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	perSecond(b, 1, "records/s")
}

// BenchmarkOpen is targets 2 and 5: Open on a results file of n lines, for
// int64 and string keys, beside decoding every line with encoding/json.
func BenchmarkOpen(b *testing.B) {
	for _, n := range benchSizes() {
		dir := b.TempDir()
		writeBenchResults(b, dir, "ints", n, func(i int) int64 { return int64(i) })
		writeBenchResults(b, dir, "strings", n, benchStringKey)
		b.Run(sizeName(n)+"/int64", func(b *testing.B) {
			benchOpen[int64](b, dir, "ints", n)
		})
		b.Run(sizeName(n)+"/string", func(b *testing.B) {
			benchOpen[string](b, dir, "strings", n)
		})
		b.Run(sizeName(n)+"/json-decode", func(b *testing.B) {
			path := filepath.Join(dir, "ints_results.jsonl")
			for b.Loop() {
				got, err := jsonDecodeLines(path)
				if err != nil {
					b.Fatal(err)
				}
				if got != n {
					b.Fatalf("decoded %d lines, want %d", got, n)
				}
			}
			perSecond(b, n, "lines/s")
		})
	}
}

func benchOpen[K comparable](b *testing.B, dir, name string, n int) {
	var heap float64
	for b.Loop() {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		r, err := Open[K, benchRecord](name, WithDir(dir), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		heap = float64(heapInUse()-before) / float64(n)
		if c, _ := r.Progress(); c != n {
			b.Fatalf("completed %d, want %d", c, n)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	perSecond(b, n, "lines/s")
	b.ReportMetric(heap, "heapB/key")
}

// jsonDecodeLines is the reference for Open: what a loader that decodes each
// line into a struct with encoding/json costs.
func jsonDecodeLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	var rec struct {
		Key       int64           `json:"key"`
		Result    json.RawMessage `json:"result"`
		Timestamp string          `json:"timestamp"`
	}
	n := 0
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return n, err
		}
		n++
	}
	return n, sc.Err()
}

// BenchmarkIterateCompleted is target 3: Iterate over n items that are all
// completed, in the order they were saved, and shuffled.
func BenchmarkIterateCompleted(b *testing.B) {
	for _, n := range benchSizes() {
		dir := b.TempDir()
		writeBenchResults(b, dir, "ints", n, func(i int) int64 { return int64(i) })
		r, err := Open[int64, int64]("ints", WithDir(dir), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		items := make([]int64, n)
		for i := range items {
			items[i] = int64(i)
		}
		key := func(v int64) int64 { return v }
		run := func(b *testing.B) {
			for b.Loop() {
				for range r.Iterate(items, key) {
					b.Fatal("a completed item was yielded")
				}
			}
			perSecond(b, n, "items/s")
		}
		b.Run(sizeName(n)+"/in-order", run)
		rand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		b.Run(sizeName(n)+"/shuffled", run)
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveGrown is the second half of target 5: SaveResult into a
// checkpoint that already holds n keys, beside saving into an empty one.
func BenchmarkSaveGrown(b *testing.B) {
	for _, n := range benchSizes() {
		dir := b.TempDir()
		writeBenchResults(b, dir, "ints", n, func(i int) int64 { return int64(i) })
		rec := newBenchRecord(1)
		b.Run(sizeName(n)+"/grown", func(b *testing.B) {
			r, err := Open[int64, int64]("ints", WithDir(dir), WithLogger(quietLog))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			base := int64(n)
			runSplit(b, 1, func(i int64) error { return r.SaveResult(base+i, rec) })
		})
		b.Run(sizeName(n)+"/empty", func(b *testing.B) {
			r, err := Open[int64, int64]("empty", WithDir(b.TempDir()), WithLogger(quietLog))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			runSplit(b, 1, func(i int64) error { return r.SaveResult(i, rec) })
		})
	}
}

// BenchmarkAllResults is target 4: stream every result from disk. The heap
// must not grow with the number of results.
func BenchmarkAllResults(b *testing.B) {
	for _, n := range benchSizes() {
		dir := b.TempDir()
		writeBenchResults(b, dir, "ints", n, func(i int) int64 { return int64(i) })
		r, err := Open[int64, int64]("ints", WithDir(dir), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(n), func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				b.StopTimer()
				before := heapInUse()
				b.StartTimer()
				count := 0
				for _, v := range r.AllResults() {
					if len(v) == 0 {
						b.Fatal("empty result")
					}
					count++
					if count%(n/4) == 0 {
						b.StopTimer()
						if h := heapInUse(); h > before {
							peak = max(peak, h-before)
						}
						b.StartTimer()
					}
				}
				if count != n {
					b.Fatalf("streamed %d results, want %d", count, n)
				}
			}
			perSecond(b, n, "results/s")
			b.ReportMetric(float64(peak), "heapGrowthB")
		})
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// Micro-benchmarks of the per-line work of Open.
func benchLine(b *testing.B, key []byte) []byte {
	res, err := json.Marshal(newBenchRecord(1234567))
	if err != nil {
		b.Fatal(err)
	}
	return appendResultLine(nil, key, res, time.Date(2026, 1, 2, 3, 4, 5, 6000, time.Local))
}

func BenchmarkParseRecord(b *testing.B) {
	cases := []struct {
		name string
		line []byte
	}{
		{"compact", benchLine(b, []byte("1234567"))},
		{"python", []byte(`{"key": "1234567", "result": {"id": 1234567, "name": "item-1234567", "score": 3.5, "tags": ["alpha", "beta"], "passed": true}, "timestamp": "2026-11-23T13:47:51.518145"}` + "\n")},
	}
	for _, c := range cases {
		line := c.line[:len(c.line)-1]
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, ok := parseRecord(line); !ok {
					b.Fatal("not a record")
				}
			}
		})
	}
}

func BenchmarkDecodeKey(b *testing.B) {
	ints, _ := newKeyCodec[int64]()
	strs, _ := newKeyCodec[string]()
	b.Run("int64", func(b *testing.B) {
		raw := []byte("1234567")
		for b.Loop() {
			if _, err := ints.decode(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("int64-quoted", func(b *testing.B) {
		raw := []byte(`"1234567"`)
		for b.Loop() {
			if _, err := ints.decode(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("string", func(b *testing.B) {
		raw := []byte(`"doc-01234567"`)
		for b.Loop() {
			if _, err := strs.decode(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIndexGrow adds keys to an empty index one by one, as saves do,
// and reports the longest single upsert and the 99.9th percentile: the index
// grows by doubling its table several times on the way, and no upsert may
// pause for a rebuild (see index.grow).
func BenchmarkIndexGrow(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			codec, err := newKeyCodec[int64]()
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, n)
			for b.Loop() {
				x := newIndex(codec.hash, 0)
				for i := range n {
					start := time.Now()
					*x.upsert(int64(i)) = slotDone
					lat[i] = time.Since(start)
				}
				if x.len() != n {
					b.Fatalf("%d keys, want %d", x.len(), n)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(lat[n*999/1000].Nanoseconds())/1000, "p99.9-µs")
			b.ReportMetric(float64(n), "keys")
		})
	}
}

func BenchmarkBalanced(b *testing.B) {
	line := benchLine(b, []byte("1234567"))
	rec, ok := parseRecord(line[:len(line)-1])
	if !ok {
		b.Fatal("not a record")
	}
	for _, v := range []struct {
		name string
		fn   func([]byte) bool
	}{{"one-pass", balanced}, {"reference", balancedReference}} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				if !v.fn(rec.body) {
					b.Fatal("unbalanced")
				}
			}
		})
	}
}
