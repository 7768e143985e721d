package checkpoint

import (
	"math/bits"
	"reflect"
	"unsafe"
)

// index is the runner's per-key state: a hash table from key to slot that
// also remembers the order in which keys first appeared.
//
// It replaces a map[K]slot, which profiles of Open and Iterate on 10
// million keys showed bound by random memory access (about 550 ns per new
// key in Open, 5 million lookups per second in Iterate):
//
//   - Locality. A resumed run usually meets its keys in the order the last
//     run saved them. The entries are stored in that order, so a caller that
//     keeps a cursor (Iterate, AllResults) checks the next entry first and
//     only hashes on a miss: a sequential read instead of a random one into a
//     table far larger than the CPU's caches.
//   - Batches. Open inserts keys in batches whose table words it reads
//     first, so that their cache misses overlap (see upsertBatch); a map
//     takes one key at a time. Iterate over items in another order does the
//     same for lookups (see prefetch).
//
// No save ever waits for the index to be rebuilt (round 2 of the
// performance work; a doubling used to stop every save for 0.6 s at 12
// million keys):
//
//   - The entries live in chunks of chunkLen that never move, so adding a
//     key never copies the others.
//   - The table grows incrementally: when it is 3/4 full a table twice as
//     large takes its place for new keys, and each new key then moves
//     migrateStep old entries over, while lookups check both tables. The new
//     table's chunks are allocated when first written, so no single save
//     clears hundreds of megabytes.
//
// Memory: an int64 entry is 16 bytes; a string key is an 8-byte reference
// into a pointer-free byte arena plus its slot, 16 bytes and the key's own
// bytes. So the garbage collector has nothing to trace per key, whatever
// the key type's kind (for the basic kinds). The table is sized exactly (not
// to a power of two) at most 3/4 full: 8/0.75 = 10.7 bytes per key once
// Open has sized it from the files.
//
// Keys are never removed one by one (a key keeps its slot until Clear), so
// the table needs no tombstones. It is not safe for concurrent use; the
// runner's mutex guards it.
type index[K comparable] struct {
	hash func(K) uint64
	n    int // entries

	// Exactly one of the two entry arrays is used, by the key's kind: ents
	// for every K but strings, strs (with arena) for strings.
	isStr bool
	ents  [][]entry[K]
	strs  [][]strEntry
	arena strArena

	// cur is where keys are placed. While the index grows, old is the table
	// before and holds entries [0, oldN); those before moved are in cur too.
	cur   table
	old   table
	oldN  int
	moved int

	touched uint64 // see upsertBatch
}

type entry[K comparable] struct {
	key K
	s   slot
}

// strEntry is an entry of a string key: a strArena reference, no pointer.
type strEntry struct {
	ref uint64
	s   slot
}

const (
	posBits = 40 // up to 2^40-1 keys: far beyond what fits in memory
	posMask = 1<<posBits - 1
	tagBits = 64 - posBits

	// Entries and table words come in chunks of chunkLen (1 MiB of int64
	// entries, 512 KiB of table words): large enough that the chunk lookup
	// is a cached read, small enough to clear in tens of microseconds.
	chunkBits = 16
	chunkLen  = 1 << chunkBits
	chunkMask = chunkLen - 1

	// migrateStep entries move to the new table per key added while the
	// index grows. The next growth comes after as many new keys as there
	// are old ones, so any step of 1 or more finishes in time; 4 finishes
	// early, at 4 table writes per save.
	migrateStep = 4
)

func newIndex[K comparable](hash func(K) uint64, hint int) *index[K] {
	x := &index[K]{hash: hash, isStr: reflect.TypeFor[K]().Kind() == reflect.String}
	x.reset(hint)
	return x
}

// reset empties the index and sizes it for hint keys.
func (x *index[K]) reset(hint int) {
	// The table first: see the note in Runner.load on the order of Open's
	// large allocations.
	x.cur = newTable(tableSize(hint), true)
	x.old, x.oldN, x.moved = table{}, 0, 0
	x.n = 0
	x.arena = strArena{}
	first := min(max(hint, 8), chunkLen)
	if x.isStr {
		x.strs = [][]strEntry{make([]strEntry, 0, first)}
		x.ents = nil
	} else {
		x.ents = [][]entry[K]{make([]entry[K], 0, first)}
		x.strs = nil
	}
}

// table is open addressing with linear probing over size words, in chunks.
// A word is 0 when empty, else the top tagBits of the key's hash above the
// entry's position + 1, so most probes that do not match are rejected
// without touching the entries.
type table struct {
	chunks [][]uint64 // a nil chunk is all empty: allocated when first written
	size   uint64
}

// tableSize is the number of words that holds n keys at most 3/4 full: 16
// or more, and a whole number of chunks past one chunk.
func tableSize(n int) int {
	size := max(16, (4*n+2)/3+1)
	if size > chunkLen {
		size = (size + chunkMask) &^ chunkMask
	}
	return size
}

// newTable makes a table of size words. With eager, every chunk is
// allocated now; otherwise each is on its first write.
func newTable(size int, eager bool) table {
	t := table{size: uint64(size), chunks: make([][]uint64, (size+chunkMask)>>chunkBits)}
	if eager {
		for c := range t.chunks {
			t.chunks[c] = t.newChunk(c)
		}
	}
	return t
}

// newChunk allocates chunk c and writes it once, front to back. Memory
// fresh from the kernel is mapped on first use: read first, as the batched
// upserts do, a page faults twice (mapped to the zero page, then copied on
// the write), at random; written in order first, it faults once, in
// sequence. Profiles of Open showed those faults as the largest cost of the
// first reads.
func (t *table) newChunk(c int) []uint64 {
	n := min(chunkLen, int(t.size)-c<<chunkBits)
	w := make([]uint64, n)
	clear(w)
	return w
}

// limit is the number of keys the table holds before the index grows.
func (t *table) limit() int { return int(t.size * 3 / 4) }

// home is the first word to probe for hash h: the low posBits bits of h
// scaled to the table's size (a multiply, not a modulo), so that the tag,
// the top bits, stays independent of the position.
func (t *table) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h<<tagBits, t.size)
	return hi
}

func (t *table) word(i uint64) uint64 {
	c := t.chunks[i>>chunkBits]
	if c == nil {
		return 0
	}
	return c[i&chunkMask]
}

func (t *table) next(i uint64) uint64 {
	if i++; i == t.size {
		return 0
	}
	return i
}

// place puts position p, of a key with hash h that is not in t, into t.
func (t *table) place(h uint64, p int) {
	i := t.home(h)
	for t.word(i) != 0 {
		i = t.next(i)
	}
	c := &t.chunks[i>>chunkBits]
	if *c == nil {
		*c = t.newChunk(int(i >> chunkBits))
	}
	(*c)[i&chunkMask] = h>>posBits<<posBits | uint64(p+1)
}

func (x *index[K]) len() int { return x.n }

// keyIs reports whether the entry at p holds k.
func (x *index[K]) keyIs(p int, k K) bool {
	if x.isStr {
		return x.arena.get(x.strs[p>>chunkBits][p&chunkMask].ref) == *(*string)(unsafe.Pointer(&k))
	}
	return x.ents[p>>chunkBits][p&chunkMask].key == k
}

// keyAt returns the key at p. A string key's bytes are in the arena, which
// never changes them.
func (x *index[K]) keyAt(p int) K {
	if x.isStr {
		s := x.arena.get(x.strs[p>>chunkBits][p&chunkMask].ref)
		return *(*K)(unsafe.Pointer(&s))
	}
	return x.ents[p>>chunkBits][p&chunkMask].key
}

func (x *index[K]) slotAt(p int) *slot {
	if x.isStr {
		return &x.strs[p>>chunkBits][p&chunkMask].s
	}
	return &x.ents[p>>chunkBits][p&chunkMask].s
}

// all yields every key and its slot, in order of first appearance.
func (x *index[K]) all(yield func(K, slot) bool) {
	for p := range x.n {
		if !yield(x.keyAt(p), *x.slotAt(p)) {
			return
		}
	}
}

// findIn returns the position of k, of hash h, in t, or -1.
func (x *index[K]) findIn(t *table, k K, h uint64) int {
	tag := h >> posBits
	for i := t.home(h); ; i = t.next(i) {
		w := t.word(i)
		if w == 0 {
			return -1
		}
		if w>>posBits == tag {
			if p := int(w&posMask) - 1; x.keyIs(p, k) {
				return p
			}
		}
	}
}

func (x *index[K]) findHashed(k K, h uint64) int {
	if p := x.findIn(&x.cur, k, h); p >= 0 || x.old.chunks == nil {
		return p
	}
	return x.findIn(&x.old, k, h)
}

// find returns the position of k in entries, or -1.
func (x *index[K]) find(k K) int {
	return x.findHashed(k, x.hash(k))
}

// get returns k's slot; ok is false if k is not in the index.
func (x *index[K]) get(k K) (s slot, ok bool) {
	if p := x.find(k); p >= 0 {
		return *x.slotAt(p), true
	}
	return 0, false
}

// A cursor is a caller's place in the index, for findNear. The zero value
// starts at the first entry.
type cursor struct {
	pos int  // the entry the next key probably is
	off bool // the last key was not at pos: hash without looking there
}

// findNear is find for a caller that walks keys in roughly the order they
// were added. While keys come in that order it checks the entry at c.pos
// first and leaves the cursor just past it: one comparison, no hashing. When
// they don't (shuffled items), it stops looking there, so a random order
// costs no more than find, until a hashed key lands on the cursor again.
func (x *index[K]) findNear(k K, c *cursor) int {
	if !c.off && c.pos < x.n && x.keyIs(c.pos, k) {
		c.pos++
		return c.pos - 1
	}
	p := x.find(k)
	if p >= 0 {
		// An absent key (a new item) says nothing about the order.
		c.off = p != c.pos
		c.pos = p + 1
	}
	return p
}

// getNear is get with findNear's cursor.
func (x *index[K]) getNear(k K, c *cursor) (s slot, ok bool) {
	if p := x.findNear(k, c); p >= 0 {
		return *x.slotAt(p), true
	}
	return 0, false
}

// The lookups of Iterate over shuffled items are software-pipelined. Each
// lookup costs two dependent cache misses, the table word and then the entry
// it points to; one after the other, a lookup waits for memory twice, and a
// batch that reads all its words and then all its entries still waits
// twice per batch. So the keys are read ahead in batches of prefetchLen, and
// each batch goes through three stages, one per batch consumed:
//
//  1. touchWords: hash the keys and read their table words;
//  2. touchEntries, one batch later: read the entries those words point to
//     (the words are in cache by now);
//  3. doneAhead, one batch later again: the real lookups, all in cache.
//
// Stages 1 and 2 of two different batches are independent loads, so their
// misses are in flight together while stage 3 runs; no load waits on a miss
// issued just before it. The values read go to *sink, so that the loads are
// not optimised away; only the caller's goroutine writes it. Touching is only
// a hint: the index may change between the stages (saves, growth), and only
// stage 3, under the read lock, decides anything.

// touchWords stores the hash of each key in hs and reads its home table
// word.
func (x *index[K]) touchWords(keys []K, hs *[prefetchLen]uint64, sink *uint64) {
	keys = keys[:min(len(keys), prefetchLen)]
	var sum uint64
	for i, k := range keys {
		h := x.hash(k)
		hs[i] = h
		sum += x.cur.word(x.cur.home(h))
	}
	*sink += sum
}

// touchEntries reads the entries of the keys of hashes hs[:n]: for each, the
// entry of the first word from its home on whose tag matches, which is the
// key's own but for a rare tag collision. At a table 3/4 full, about half
// the keys are not in their home word (linear probing), so the entry the
// home word points to would be the wrong one for them; the probe runs over
// words that stage 1 brought into cache, mostly within the same line.
func (x *index[K]) touchEntries(n int, hs *[prefetchLen]uint64, sink *uint64) {
	var sum uint64
	t := &x.cur
	for _, h := range hs[:min(n, prefetchLen)] {
		tag := h >> posBits
		for i := t.home(h); ; i = t.next(i) {
			w := t.word(i)
			if w == 0 {
				break
			}
			if w>>posBits == tag {
				if p := int(w&posMask) - 1; p < x.n {
					sum += uint64(*x.slotAt(p))
				}
				break
			}
		}
	}
	*sink += sum
}

// doneAhead reports, as bit i of the result, which of keys (at most
// prefetchLen, hashes in hs, from touchWords) are completed, and moves c as
// findNear would have, one key after the other.
func (x *index[K]) doneAhead(keys []K, hs *[prefetchLen]uint64, c *cursor) uint64 {
	var done uint64
	for i, k := range keys[:min(len(keys), prefetchLen)] {
		if p := x.findHashed(k, hs[i]); p >= 0 {
			c.off = p != c.pos
			c.pos = p + 1
			if x.slotAt(p).done() {
				done |= 1 << i
			}
		}
	}
	return done
}

// prefetchLen is the number of keys in a batch read ahead: with two
// batches in flight, enough misses to keep the memory system busy, few
// enough to stay in the L1 cache. At most 64 (a bit per key in doneAhead).
// 64 against 32, alternating runs of BenchmarkIterateShuffledVsMap at 10M
// keys: ratio to the map loop 1.02 and 0.85 against 0.71 and 0.74.
const prefetchLen = 64

// upsert returns a pointer to k's slot, adding k if it is absent. A new
// key's slot is 0, which no stored key has (see slot): the caller must set
// it. The pointer is valid until the next upsert.
func (x *index[K]) upsert(k K) *slot {
	return x.upsertHashed(k, x.hash(k))
}

// upsertBatch upserts keys in order, calling fn with each one's slot as
// upsert returns it. hs[i] must be x.hash(keys[i]): Open computes the hashes
// on its reading goroutine, where the keys' bytes are still in cache.
//
// With millions of keys the table is far larger than the CPU caches, and a
// lookup that waits for memory between two lines of parsing costs a few
// hundred nanoseconds (measured in Open). Reading the table words of a whole
// batch first, with no branch on what they hold, lets the CPU fetch them all
// at once; the upserts that follow then find them in cache.
func (x *index[K]) upsertBatch(keys []K, hs []uint64, fn func(i int, sp *slot)) {
	hs = hs[:len(keys)]
	var touched uint64
	for _, h := range hs {
		touched += x.cur.word(x.cur.home(h))
	}
	x.touched += touched // keep the loads: their value is never used
	for i, k := range keys {
		fn(i, x.upsertHashed(k, hs[i]))
	}
}

func (x *index[K]) upsertHashed(k K, h uint64) *slot {
	if p := x.findHashed(k, h); p >= 0 {
		return x.slotAt(p)
	}
	if x.old.chunks != nil {
		x.migrate(migrateStep)
	}
	if x.n+1 > x.cur.limit() {
		x.grow()
	}
	p := x.n
	x.appendKey(k)
	x.cur.place(h, p)
	return x.slotAt(p)
}

// appendKey adds k as entry n. Chunks past the first are allocated whole;
// the first grows as a slice does, so that a small index stays small.
func (x *index[K]) appendKey(k K) {
	c := x.n >> chunkBits
	if x.isStr {
		if c == len(x.strs) {
			x.strs = append(x.strs, make([]strEntry, 0, chunkLen))
		}
		ref := x.arena.put(*(*string)(unsafe.Pointer(&k)))
		x.strs[c] = append(x.strs[c], strEntry{ref: ref})
	} else {
		if c == len(x.ents) {
			x.ents = append(x.ents, make([]entry[K], 0, chunkLen))
		}
		x.ents[c] = append(x.ents[c], entry[K]{key: k})
	}
	x.n++
}

// grow starts moving the index to a table twice as large. New keys go to
// the new table at once; the old keys follow, migrateStep per new key (see
// migrate). Nothing is copied here: the new table's chunks are allocated as
// they are written.
func (x *index[K]) grow() {
	if x.old.chunks != nil {
		x.migrate(x.oldN) // finish the last growth first (not reached with migrateStep >= 1)
	}
	x.old, x.oldN, x.moved = x.cur, x.n, 0
	x.cur = newTable(tableSize(2*x.n), false)
	x.migrate(migrateStep)
}

// migrate moves up to n old entries into the current table, and drops the
// old table once all are there. Lookups check the current table first and
// then the old one, so a key is found wherever it is meanwhile.
func (x *index[K]) migrate(n int) {
	end := min(x.oldN, x.moved+n)
	for p := x.moved; p < end; p++ {
		x.cur.place(x.hash(x.keyAt(p)), p)
	}
	x.moved = end
	if x.moved == x.oldN {
		x.old, x.oldN, x.moved = table{}, 0, 0
	}
}

// strArena holds the bytes of an index's string keys in blocks that hold no
// pointers, addressed by 8-byte references, so that ten million string keys
// cost the garbage collector a few hundred blocks instead of ten million
// pointers to trace on every cycle. Bytes once written never change. The
// zero value is empty and ready.
type strArena struct {
	blocks [][]byte
	cur    int // the block small keys go to, if any
}

// A reference is block<<40 | offset<<20 | length; a length of refWhole
// means the key fills its own block (keys of a MiB or more).
const (
	refBits       = 20
	refMask       = 1<<refBits - 1
	refWhole      = refMask
	arenaMaxBlock = 1 << refBits
	arenaMinBlock = 4 << 10
)

func (a *strArena) put(s string) uint64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	if n >= refWhole {
		a.blocks = append(a.blocks, []byte(s))
		return uint64(len(a.blocks)-1)<<(2*refBits) | refWhole
	}
	if len(a.blocks) == 0 || len(a.blocks[a.cur])+n > cap(a.blocks[a.cur]) {
		// Blocks double up to a MiB, so that a small checkpoint stays small.
		size := arenaMinBlock
		if len(a.blocks) > 0 {
			size = min(2*cap(a.blocks[a.cur]), arenaMaxBlock)
		}
		a.blocks = append(a.blocks, make([]byte, 0, max(size, n)))
		a.cur = len(a.blocks) - 1
	}
	b := a.blocks[a.cur]
	off := len(b)
	a.blocks[a.cur] = append(b, s...)
	return uint64(a.cur)<<(2*refBits) | uint64(off)<<refBits | uint64(n)
}

func (a *strArena) get(ref uint64) string {
	n := ref & refMask
	if n == 0 {
		return ""
	}
	b := a.blocks[ref>>(2*refBits)]
	if n == refWhole {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return unsafe.String(&b[ref>>refBits&refMask], n)
}

// lookahead holds the keys computed ahead of Iterate's loop, in up to
// aheadBatches batches at the stages of the pipeline above.
type lookahead[K comparable] struct {
	b     [aheadBatches]aheadBatch[K]
	head  int    // b[head] is the batch being consumed, if queued > 0
	queue int    // batches read ahead, b[head] first
	end   int    // the item after the last one read ahead
	i     int    // keys[i:n] of b[head] are the keys of the next items
	done  uint64 // bit j: b[head].keys[j] was completed when looked up
	sink  uint64
}

// aheadBatches is the current batch and the two in stages 1 and 2.
const aheadBatches = 3

type aheadBatch[K comparable] struct {
	keys  [prefetchLen]K
	hs    [prefetchLen]uint64
	n     int
	stage int // 1: words read; 2: entries read too
}

// keyAhead returns the key of items[i], and skip if it was already
// completed when read ahead. While items come in the order of the entries
// (c.off is false) it is keyFn(items[i]), with skip false: the caller looks
// it up. Once they do not, it reads the keys of the next items ahead in
// batches, moves each batch one stage down the pipeline (see touchWords)
// per batch consumed, and looks the next batch up under one read lock.
//
// A completed key is skipped without a second look: nothing makes a result
// pending again but a later SaveError of the same key, and a skip decided a
// few items early is as right as one decided a moment before the item (a
// concurrent save could land just after either). Every other key is looked
// up again by the caller, as the item is reached, so that a key saved
// meanwhile (a duplicate item, saved in the loop) is not yielded twice.
// keyFn is still called once per item, up to aheadBatches*prefetchLen items
// before the loop reaches them. When items come back into the entries'
// order, the batches read ahead are used up and keyAhead is per key again.
func (r *Runner[K, T]) keyAhead(la *lookahead[K], items []T, i int, keyFn func(T) K, c *cursor) (k K, skip bool) {
	if la.queue > 0 {
		cur := &la.b[la.head]
		if la.i < cur.n {
			la.i++
			return cur.keys[la.i-1], la.done>>(la.i-1)&1 != 0
		}
		la.head = (la.head + 1) % aheadBatches
		la.queue--
	}
	if la.queue == 0 {
		if !c.off {
			return keyFn(items[i]), false
		}
		la.end = i
	}
	// items[i:la.end] are queued; read ahead (outside the lock: keyFn is the
	// caller's code) while items are out of order.
	var fresh int
	for c.off && la.queue < aheadBatches && la.end < len(items) {
		b := &la.b[(la.head+la.queue)%aheadBatches]
		b.n = min(prefetchLen, len(items)-la.end)
		for j := range b.n {
			b.keys[j] = keyFn(items[la.end+j])
		}
		b.stage = 0
		la.end += b.n
		la.queue++
		fresh++
	}
	cur := &la.b[la.head]
	r.mu.RLock()
	// Stage 1 for the new batches, stage 2 for the next one, then the
	// lookups of the current one (stages 1 and 2 at once on the first).
	for q := la.queue - fresh; q < la.queue; q++ {
		b := &la.b[(la.head+q)%aheadBatches]
		r.index.touchWords(b.keys[:b.n], &b.hs, &la.sink)
		b.stage = 1
	}
	for q := range min(la.queue, 2) {
		if b := &la.b[(la.head+q)%aheadBatches]; b.stage == 1 {
			r.index.touchEntries(b.n, &b.hs, &la.sink)
			b.stage = 2
		}
	}
	la.done = 0
	if !r.closed { // else the caller's lookup records ErrClosed
		la.done = r.index.doneAhead(cur.keys[:cur.n], &cur.hs, c)
	}
	r.mu.RUnlock()
	la.i = 1
	return cur.keys[0], la.done&1 != 0
}
