package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Open parses a large journal on every core. Profiles of Open at 10
// million lines showed parsing (the framing, the whole-body check, the
// key) at about twice the cost of the index's upserts, on one reading
// goroutine, with the index's goroutine waiting for it half the time. So
// the file is cut into chunks of loadChunkSize; helper goroutines claim
// chunks in order and parse them, and the caller's goroutine takes the
// results in file order and fills the index, parsing the next unclaimed
// chunk itself whenever the one it needs is not ready. With two cores that
// is two goroutines, both busy to the end (three, a parser per core plus
// the index's, cost more CPU in preemptions and ran no faster). The latest
// line of a key still wins, and every rule of journal.load holds (see
// consume).
//
// A chunk owns the lines that start in it. Its parser reads from one byte
// before the chunk, to see where its first line starts, and reads past its
// end to finish its last line; a line longer than a chunk belongs to the
// chunk it starts in, and the chunks it covers own nothing. Line numbers
// are counted per chunk and added up in order.
//
// Memory stays bounded: loadChunkBufs results per goroutine in flight at
// most, and one read window of loadReadSize per goroutine (more only for a
// longer line).

const (
	loadChunkSize = 1 << 20
	// loadParallelMin is the smallest journal parsed in parallel: below
	// it, goroutines and their buffers cost more than they save.
	loadParallelMin = 2 * loadChunkSize
	loadMaxParsers  = 4 // the index's goroutine would not keep up with more
	loadChunkBufs   = 3 // per parsing goroutine: one being parsed, two waiting
	loadChunkSlack  = 16 << 10
)

// loadHelpers returns the number of goroutines that help the caller's parse
// a journal of size bytes, or 0 to load it on the caller's goroutine alone.
func loadHelpers(size int64) int {
	p := min(runtime.GOMAXPROCS(0), loadMaxParsers)
	if p < 2 || size < loadParallelMin {
		return 0
	}
	return p - 1
}

// loadChunk is what a parser found in one chunk, in file order.
type loadChunk[K comparable] struct {
	keys   []K
	offs   []int64
	hashes []uint64
	// arena holds the bytes of string keys until the index has copied
	// them into its own.
	arena keyArena
	// bad are the lines that are not records, with line numbers counted
	// from the chunk's first line (1); goodBefore[i] is the number of
	// records before bad line i in the chunk.
	bad        corruptLines
	goodBefore []int
	lines      int   // complete lines owned, blank and bad ones included
	end        int64 // offset just past the last complete line owned; -1 if the chunk owns none
	// err stops the chunk: a read error, or (with errLine, counted as bad
	// lines are) a key that does not decode, after the records in keys.
	err     error
	errLine int
	shrunk  bool // the file ended before its size: nothing after this chunk
}

func (c *loadChunk[K]) reset() {
	clear(c.keys) // let go of string keys: the index copied what it keeps
	c.keys, c.offs, c.hashes = c.keys[:0], c.offs[:0], c.hashes[:0]
	c.arena.block = c.arena.block[:0]
	c.bad.data, c.bad.spans, c.goodBefore = c.bad.data[:0], c.bad.spans[:0], c.goodBefore[:0]
	c.lines, c.end, c.err, c.errLine, c.shrunk = 0, -1, nil, 0, false
}

// chunkParser is one parsing goroutine's read buffer: a window of the file
// that slides over a chunk, small enough to stay in the core's cache while
// the index's goroutine fills the rest of it (reading a whole chunk at once
// made each read cost five times as much in profiles).
type chunkParser[K comparable] struct {
	buf    []byte
	from   int64 // file offset of buf[0]
	filled int64 // bytes of buf read
	size   int64 // of the file; less if it shrank while read
}

const loadReadSize = 128 << 10

// fill drops the bytes before offset keep and reads more after the rest, at
// most upTo bytes. It returns false if nothing more can be read: at the end
// of the file (which may have shrunk, see loadChunk.shrunk) or on an error,
// which it puts in c.
func (p *chunkParser[K]) fill(j *journal, keep, upTo int64, c *loadChunk[K]) bool {
	if keep > p.from {
		p.filled = int64(copy(p.buf, p.buf[keep-p.from:p.filled]))
		p.from = keep
	}
	if p.filled == int64(len(p.buf)) {
		p.buf = append(p.buf, make([]byte, len(p.buf))...) // a line longer than the buffer
	}
	at := p.from + p.filled
	want := min(int64(len(p.buf))-p.filled, p.size-at, upTo)
	if want <= 0 {
		return false
	}
	n, err := j.f.ReadAt(p.buf[p.filled:p.filled+want], at)
	p.filled += int64(n)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			c.err = err
			return false
		}
		p.size, c.shrunk = at+int64(n), true // the file shrank under us (Clear): stop at what was read
	}
	return n > 0
}

// parse reads the lines that start in [lo, hi) of j, whose size is size,
// into c, readSize bytes at a time. decode turns a key into K.
func (p *chunkParser[K]) parse(j *journal, lo, hi, size, readSize int64, c *loadChunk[K], decode func([]byte, *keyArena) (K, error), hash func(K) uint64) {
	c.reset()
	if p.buf == nil {
		p.buf = make([]byte, readSize)
	}
	p.from, p.filled, p.size = max(lo-1, 0), 0, size
	// The first line that starts at lo or after, before hi: after a
	// newline at lo-1 or later.
	s := lo
	if lo > 0 {
		for pos := lo - 1; ; {
			if pos >= p.from+p.filled && !p.fill(j, pos, hi-pos, c) {
				return // no line starts in this chunk
			}
			end := min(hi-1, p.from+p.filled)
			if i := bytes.IndexByte(p.buf[pos-p.from:end-p.from], '\n'); i >= 0 {
				s = pos + int64(i) + 1
				break
			}
			if pos = end; pos >= hi-1 {
				return // a line from an earlier chunk covers this one
			}
		}
	}
	c.end = s
	for s < hi {
		nl := int64(-1)
		for from := s; ; {
			if from < p.from+p.filled {
				if i := bytes.IndexByte(p.buf[from-p.from:p.filled], '\n'); i >= 0 {
					nl = from + int64(i)
					break
				}
				from = p.from + p.filled
			}
			// Past hi, read no more than a line needs, in small steps.
			upTo := int64(len(p.buf))
			if from >= hi {
				upTo = loadChunkSlack
			}
			if !p.fill(j, s, upTo, c) {
				return // a torn tail, for finishLoad; or a read error
			}
		}
		line := p.buf[s-p.from : nl-p.from]
		c.lines++
		switch rec, kind := classifyLine(line); kind {
		case lineBad:
			c.bad.add(s, c.lines, line)
			c.goodBefore = append(c.goodBefore, len(c.keys))
		case lineRecord:
			k, err := decode(rec.key, &c.arena)
			if err != nil {
				c.err, c.errLine = err, c.lines
				return
			}
			c.keys = append(c.keys, k)
			c.offs = append(c.offs, s)
			c.hashes = append(c.hashes, hash(k)) // here, while k is in this core's cache
		}
		s = nl + 1
		c.end = s
	}
}

// loadParallel is journal.load with fn's work split in two: decode (the
// key, while parsing a chunk) and add (the index, in file order, on the
// caller's goroutine). Besides the caller's, it runs helpers goroutines
// that parse chunks of chunkSize bytes; the caller parses chunks too
// whenever the next one in order is not ready, so that on two cores two
// goroutines share the work and none waits while work is left. It returns
// once its goroutines have ended.
func (r *Runner[K, T]) loadParallel(j *journal, size int64, helpers int, chunkSize, readSize int64, add func(off int64, sp *slot)) error {
	lp := &loadPipe[K]{j: j, size: size, chunkSize: chunkSize, readSize: readSize,
		chunks: int((size + chunkSize - 1) / chunkSize), decode: r.keys.keep, hash: r.index.hash}
	// Chunks are claimed in order, each with a result buffer, and a buffer
	// is free again once its chunk is consumed: so the claimed chunks not
	// yet consumed are consecutive and at most len(slots), and each finds
	// its slot empty.
	bufs := loadChunkBufs * (helpers + 1)
	lp.free = make(chan *loadChunk[K], bufs)
	lp.slots = make([]chan *loadChunk[K], bufs)
	for i := range bufs {
		lp.free <- &loadChunk[K]{}
		lp.slots[i] = make(chan *loadChunk[K], 1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for range min(helpers, lp.chunks-1) {
		wg.Go(func() {
			var p chunkParser[K]
			for {
				select {
				case <-stop:
					return
				default:
				}
				select {
				case res := <-lp.free:
					if !lp.parseNext(&p, res) {
						return
					}
				case <-stop:
					return
				}
			}
		})
	}

	var st loadState
	var own chunkParser[K]
	for c := range lp.chunks {
		slot := lp.slots[c%len(lp.slots)]
		var res *loadChunk[K]
		for res == nil {
			select {
			case res = <-slot:
				continue
			default:
			}
			// Not ready: parse the next chunk not claimed, if any.
			select {
			case b := <-lp.free:
				if !lp.parseNext(&own, b) {
					res = <-slot
				}
			default:
				res = <-slot
			}
		}
		if err := r.consume(j, res, &st, add); err != nil {
			return err
		}
		shrunk := res.shrunk
		lp.free <- res
		if shrunk {
			break // nothing after it was read whole
		}
	}
	return j.finishLoad(r.log, size, &st, func(off int64, rec record) error {
		var a keyArena
		k, err := r.keys.keep(rec.key, &a)
		if err != nil {
			return err
		}
		r.index.upsertBatch([]K{k}, []uint64{r.index.hash(k)}, func(_ int, sp *slot) { add(off, sp) })
		return nil
	})
}

// loadPipe is what loadParallel's goroutines share.
type loadPipe[K comparable] struct {
	j               *journal
	size, chunkSize int64
	readSize        int64
	chunks          int
	claimed         atomic.Int64 // chunks claimed by a parser so far
	free            chan *loadChunk[K]
	slots           []chan *loadChunk[K] // chunk c's result is sent to slots[c%len(slots)]
	decode          func([]byte, *keyArena) (K, error)
	hash            func(K) uint64
}

// parseNext claims the next chunk, parses it into res and sends it to its
// slot. If every chunk is claimed, it gives res back and returns false.
func (lp *loadPipe[K]) parseNext(p *chunkParser[K], res *loadChunk[K]) bool {
	c := int(lp.claimed.Add(1) - 1)
	if c >= lp.chunks {
		lp.free <- res
		return false
	}
	lo := int64(c) * lp.chunkSize
	p.parse(lp.j, lo, min(lo+lp.chunkSize, lp.size), lp.size, lp.readSize, res, lp.decode, lp.hash)
	lp.slots[c%len(lp.slots)] <- res
	return true
}

// consume adds a parsed chunk to the index and to st, as journal.load would
// have met its lines: records in order; bad lines held back, and refused
// (or set aside with WithSkipCorrupt) once a record follows them; the
// first error in file order returned, naming the file and line.
func (r *Runner[K, T]) consume(j *journal, c *loadChunk[K], st *loadState, add func(off int64, sp *slot)) error {
	for i := 0; i < len(c.keys); i += loadBatchSize {
		keys, offs := c.keys[i:min(i+loadBatchSize, len(c.keys))], c.offs[i:]
		r.index.upsertBatch(keys, c.hashes[i:], func(k int, sp *slot) { add(offs[k], sp) })
	}
	// Records past an error were never parsed, and records upserted
	// before a bad line that is refused do not matter: the load fails.
	base := st.lastLine
	records := 0 // of the chunk's, before the bad line at hand
	pos := 0
	for i, sp := range c.bad.spans {
		if c.goodBefore[i] > records {
			if err := j.refuseHeld(&st.held, &st.bad); err != nil {
				return err
			}
			records = c.goodBefore[i]
		}
		st.held.add(sp.off, base+sp.lineNo, c.bad.data[pos:pos+sp.n])
		pos += sp.n + 1
	}
	if len(c.keys) > records || (c.err != nil && c.errLine > 0) {
		if err := j.refuseHeld(&st.held, &st.bad); err != nil {
			return err
		}
	}
	if c.err != nil {
		if c.errLine > 0 {
			return fmt.Errorf("checkpoint: %s line %d: %w", j.path, base+c.errLine, c.err)
		}
		return c.err
	}
	st.lastLine += c.lines
	if c.end >= 0 {
		st.good = c.end
	}
	return nil
}
