package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Open's hot path: resuming a run of ten million results must take seconds.
// Profiles of Open on 10 million lines showed two costs: parsing lines and
// decoding keys, about two thirds, and the index's memory accesses (a table
// of hundreds of megabytes, one cache miss per key), one third. So a large
// journal is parsed on every core while the caller's goroutine fills the
// index, chunk by chunk, in file order (see loadParallel); a small one is
// read on the caller's goroutine alone.

// loadBatch carries decoded keys with the offsets of their lines.
type loadBatch[K comparable] struct {
	keys   []K
	offs   []int64
	hashes []uint64 // of the keys
	// arena holds the bytes of the batch's string keys until the index has
	// copied them into its own arena; it is reused batch after batch.
	arena keyArena
}

// loadBatchSize is the number of keys whose table words the index reads
// ahead at once (see index.upsertBatch).
const loadBatchSize = 2048

func newLoadBatch[K comparable]() *loadBatch[K] {
	return &loadBatch[K]{
		keys:   make([]K, 0, loadBatchSize),
		offs:   make([]int64, 0, loadBatchSize),
		hashes: make([]uint64, 0, loadBatchSize),
	}
}

// loadJournal reads j (repairing a torn tail, see journal.load) and calls add
// with the offset and index slot of every record's key, in file order, on
// the caller's goroutine. Any goroutine it starts has ended when it returns.
func (r *Runner[K, T]) loadJournal(j *journal, add func(off int64, sp *slot)) error {
	if size, err := fileSize(j.f); err == nil {
		if p := loadHelpers(size); p > 0 {
			return r.loadParallel(j, size, p, loadChunkSize, loadReadSize, add)
		}
	}
	return r.loadSequential(j, add)
}

// loadSequential is loadJournal on the caller's goroutine alone.
func (r *Runner[K, T]) loadSequential(j *journal, add func(off int64, sp *slot)) error {
	b := newLoadBatch[K]()
	hash := r.index.hash
	flush := func() {
		r.index.upsertBatch(b.keys, b.hashes, func(i int, sp *slot) { add(b.offs[i], sp) })
		clear(b.keys) // let go of string keys: the index copied what it keeps
		b.keys, b.offs, b.hashes = b.keys[:0], b.offs[:0], b.hashes[:0]
		b.arena.block = b.arena.block[:0]
	}
	err := j.load(r.log, func(off int64, rec record) error {
		k, err := r.keys.keep(rec.key, &b.arena)
		if err != nil {
			return err // journal.load names the file and line
		}
		b.keys = append(b.keys, k)
		b.offs = append(b.offs, off)
		b.hashes = append(b.hashes, hash(k))
		if len(b.keys) == loadBatchSize {
			flush()
		}
		return nil
	})
	flush()
	return err
}

// resultIsNewer reports whether the result line at resOff came after the
// error line at errOff. The two files are separate, so their timestamps are
// the only order between them; a tie goes to the result. It reads both lines
// again: this happens only for keys that failed before they succeeded.
func (r *Runner[K, T]) resultIsNewer(resOff, errOff int64) bool {
	errTime, ok1 := r.errors.timeAt(errOff)
	resTime, ok2 := r.results.timeAt(resOff)
	return !ok1 || !ok2 || !resTime.Before(errTime)
}

// load opens the journals and builds the index. Errors come first so that a
// result can be compared with the key's latest error.
func (r *Runner[K, T]) load(o *options) error {
	if o.fresh {
		for _, p := range append(r.dataFiles(), r.path("_results.jsonl"), r.path("_errors.jsonl")) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	var err error
	if r.errors, err = openJournal(r.path("_errors.jsonl"), o); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if r.results, err = openJournal(r.path("_results.jsonl"), o); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	// The index's table is sized from the files at once, and written in
	// order (see newChunk). Its entries and string keys' bytes hold no
	// pointers (see index), so a collection during Open has nothing of
	// them to trace.
	if _, _, err := r.loadIndex(); err != nil {
		return err
	}
	// From here on the journals are appended to: reserve blocks ahead of
	// their ends (prealloc.go), after giving back what a job killed
	// before its Close left reserved, which on a full disk may be the
	// space the meta file needs.
	for _, j := range []*journal{r.results, r.errors} {
		if err := j.giveBack(); err != nil {
			r.log.Warn("checkpoint: could not give back disk space reserved past the end", "file", j.path, "err", err)
		}
		j.pre = &preallocator{}
	}

	m, merr := readMeta(r.metaPath)
	switch {
	case merr == nil:
		r.startedAt = m.StartedAt
		r.total.Store(int64(m.TotalItems))
	case errors.Is(merr, os.ErrNotExist) && r.results.size == 0 && r.errors.size == 0:
	default:
		r.log.Warn("checkpoint: rebuilt the meta file from the JSONL files", "file", r.metaPath, "reason", merr)
	}
	if r.startedAt.IsZero() {
		r.startedAt = time.Now()
	}
	if r.completed+r.failed > 0 {
		r.log.Info("checkpoint: resumed", "name", r.name, "completed", r.completed, "failed", r.failed)
	}
	return r.writeMeta()
}

// loadIndex builds the index from the journals, as Open and Inspect both do (errors
// first, then results, the latest line of a key winning, a result beating an
// older error by timestamp), without the meta file. It returns the number of
// records in each journal.
func (r *Runner[K, T]) loadIndex() (resRecords, errRecords int, err error) {
	resLines, _ := r.results.sizeHintsOrZero()
	errLines, _ := r.errors.sizeHintsOrZero()
	r.index = newIndex(r.keys.hash, resLines+errLines)
	addError := func(off int64, sp *slot) {
		errRecords++
		if *sp == 0 {
			r.failed++
		}
		*sp = sp.failure(off)
	}
	addResult := func(off int64, sp *slot) {
		resRecords++
		switch s := *sp; {
		case s == 0:
			r.completed++
		case !s.done():
			if !r.resultIsNewer(off, s.offset()) {
				return
			}
			r.failed--
			r.completed++
		}
		*sp = sp.result(off)
	}
	for _, step := range []struct {
		j   *journal
		add func(int64, *slot)
	}{{r.errors, addError}, {r.results, addResult}} {
		if step.j.f == nil {
			continue
		}
		if err := r.loadJournal(step.j, step.add); err != nil {
			return 0, 0, err
		}
		if t := r.lastTimestamp(step.j); t.After(r.lastTS) {
			r.lastTS = t
		}
	}
	return resRecords, errRecords, nil
}

// lastTimestamp returns the time of a journal's last record, so that new
// records are stamped after it even if the clock went back between runs.
func (r *Runner[K, T]) lastTimestamp(j *journal) time.Time {
	if j.size == 0 {
		return time.Time{}
	}
	// Find the start of the last line: read back from the end.
	start := j.size - 1
	buf := make([]byte, 4096)
	for start > 0 {
		from := max(0, start-int64(len(buf)))
		n, _ := j.f.ReadAt(buf[:start-from], from)
		if i := lastIndexNewline(buf[:n]); i >= 0 {
			start = from + int64(i) + 1
			break
		}
		start = from
	}
	line, err := j.readLine(start)
	if err != nil {
		return time.Time{}
	}
	rec, ok := parseRecord(line)
	if !ok {
		return time.Time{}
	}
	t, _ := parseTimestamp(rec.ts)
	return t
}

func lastIndexNewline(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}
