package checkpoint

import (
	"bytes"
	"time"
)

// Open's hot path: resuming a run of ten million results must take seconds.
// Profiles of Open on 10 million lines showed two costs of the same size:
// parsing lines and decoding keys, and the index's memory accesses (a table
// of hundreds of megabytes, one cache miss per key). So one goroutine reads
// and parses while the caller's goroutine fills the index, batch by batch,
// in file order.

// loadBatch carries decoded keys with the offsets of their lines.
type loadBatch[K comparable] struct {
	keys   []K
	offs   []int64
	hashes []uint64 // of the keys
}

const (
	loadBatchSize = 2048
	loadBatches   = 32 // in flight between the two goroutines
)

func newLoadBatch[K comparable]() *loadBatch[K] {
	return &loadBatch[K]{
		keys:   make([]K, 0, loadBatchSize),
		offs:   make([]int64, 0, loadBatchSize),
		hashes: make([]uint64, 0, loadBatchSize),
	}
}

// loadJournal reads j (repairing a torn tail, see journal.load) and calls add
// with the offset and index slot of every record's key, in file order. It
// returns once the reading goroutine has ended.
func (r *Runner[K, T]) loadJournal(j *journal, arena *keyArena, add func(off int64, sp *slot)) error {
	full := make(chan *loadBatch[K], loadBatches)
	free := make(chan *loadBatch[K], loadBatches)
	for range loadBatches {
		free <- newLoadBatch[K]()
	}
	errc := make(chan error, 1)
	hash := r.index.hash
	go func() {
		defer close(full)
		b := <-free
		err := j.load(r.log, func(off int64, rec record) error {
			k, err := r.keys.keep(rec.key, arena)
			if err != nil {
				return err // journal.load names the file and line
			}
			b.keys = append(b.keys, k)
			b.offs = append(b.offs, off)
			b.hashes = append(b.hashes, hash(k)) // here, while k is in this core's cache
			if len(b.keys) == loadBatchSize {
				full <- b
				b = <-free
			}
			return nil
		})
		if len(b.keys) > 0 {
			full <- b
		}
		errc <- err
	}()
	for b := range full {
		r.index.upsertBatch(b.keys, b.hashes, func(i int, sp *slot) { add(b.offs[i], sp) })
		clear(b.keys) // let go of string keys
		b.keys, b.offs, b.hashes = b.keys[:0], b.offs[:0], b.hashes[:0]
		free <- b
	}
	return <-errc
}

// reserveKeys sizes the arena for the string keys of the journals, from the
// keys in their first block. Without it, Open's arena grew block by block
// and pushed the heap past the collector's goal near the end of Open: a
// collection that had to trace ten million keys cost a quarter of a
// 10M-line Open with string keys (measured with GOGC=off). Allocated with
// the index, before any key is in it, the heap reaches that size at once;
// a collection then, if any, finds nothing to trace, and the next goal is
// past what Open needs.
func (r *Runner[K, T]) reserveKeys(arena *keyArena, journals ...*journal) {
	if r.keys.decodeIn == nil {
		return // not string keys: nothing goes in the arena
	}
	total := 0
	for _, j := range journals {
		total += estimateKeyBytes(j)
	}
	if total > arenaBlock {
		arena.block = make([]byte, 0, total)
	}
}

// estimateKeyBytes guesses the bytes of all the keys of j from its first
// block, as estimateLines does for the lines.
func estimateKeyBytes(j *journal) int {
	size, err := fileSize(j.f)
	if err != nil || size == 0 {
		return 0
	}
	buf := make([]byte, min(size, 64<<10))
	n, _ := j.f.ReadAt(buf, 0)
	sampled, keyBytes := 0, 0
	for line := range bytes.Lines(buf[:n]) {
		if line[len(line)-1] != '\n' {
			break // cut by the sample's end
		}
		sampled += len(line)
		if rec, ok := parseRecord(bytes.TrimRight(line, "\r\n")); ok {
			keyBytes += len(rec.key)
		}
	}
	if sampled == 0 {
		return 0
	}
	return int(size * int64(keyBytes) / int64(sampled))
}

// resultIsNewer reports whether the result line at resOff came after the
// error line at errOff. The two files are separate, so their timestamps are
// the only order between them; a tie goes to the result. It reads both lines
// again: this happens only for keys that failed before they succeeded.
func (r *Runner[K, T]) resultIsNewer(resOff, errOff int64) bool {
	errTime, ok1 := r.timeAt(r.errors, errOff)
	resTime, ok2 := r.timeAt(r.results, resOff)
	return !ok1 || !ok2 || !resTime.Before(errTime)
}

func (r *Runner[K, T]) timeAt(j *journal, off int64) (time.Time, bool) {
	line, err := j.readLine(off)
	if err != nil {
		return time.Time{}, false
	}
	rec, ok := parseRecord(line)
	if !ok {
		return time.Time{}, false
	}
	return parseTimestamp(rec.ts)
}
