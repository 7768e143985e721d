package checkpoint

import (
	"reflect"
	"runtime"
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
//   - One miss per lookup for small keys. Integer, float and bool keys (8
//     bytes or less: kindKey) are stored in the table itself, beside their
//     entry's position and whether the key is completed, so a lookup of a
//     key in another order than the entries costs one cache miss, as in a
//     Go map, not two (the table word, then the entry it points to). Other
//     keys (strings, structs) keep a table of 8-byte words that point to
//     their entries (see table).
//   - Reading ahead. Open inserts keys in batches and prefetches each
//     key's table slot a few dozen keys before its upsert, so that the
//     cache misses overlap (see upsertBatch); a map takes one key at a
//     time. Iterate over items in another order reads ahead for its
//     lookups too (see touchSlots, index_ahead.go).
//   - Huge pages. On Linux the tables' chunks are 2 MiB of memory mapped
//     apart from the Go heap, and those Open sizes are marked for
//     transparent huge pages, so that a random lookup does not also miss the
//     TLB (index_mem_linux.go). A growth's chunks are not: their first fault
//     would land in a save, and a huge page's may compact memory first.
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
//     clears hundreds of megabytes, and the old table's mapped chunks are
//     returned one per save.
//
// Memory: an int64 entry is 16 bytes, and so is its table slot (key and
// word): 16 + 16/0.75 = 37 bytes per key once Open has sized the table
// from the files (the table is sized exactly, not to a power of two, at
// most 3/4 full). A string key is an 8-byte reference into a pointer-free
// byte arena plus its slot, 16 bytes and the key's own bytes, and an 8-byte
// table word: 16 + 8/0.75 = 26.7 bytes and the key. So the garbage
// collector has nothing to trace per key, whatever the key type's kind (for
// the basic kinds).
//
// Keys are never removed one by one (a key keeps its slot until Clear), so
// the table needs no tombstones. It is not safe for concurrent use; the
// runner's mutex guards it, and Close and Clear release its memory under
// that mutex (reset), so no lookup can reach memory given back.
type index[K comparable] struct {
	hash func(K) uint64
	n    int // entries
	kind keyStorage
	str  bool // kind == kindStr, for the accessors below to stay inlined

	// Exactly one of the two entry arrays is used: strs (with arena) for
	// strings, ents for every other K.
	ents  [][]entry[K]
	strs  [][]strEntry
	arena strArena

	// cur is where keys are placed. While the index grows, old is the table
	// before and holds entries [0, oldN); those before moved are in cur too.
	// kindKey uses kcur and kold, the other kinds cur and old.
	cur, old   table[uint64]
	kcur, kold table[kslot[K]]
	oldN       int
	moved      int

	// pend is the position of the slot the last upsert returned, which its
	// caller may still be writing, and pendW that key's word in its key
	// table (kindKey only; -1 and nil when none). The word's done bit is
	// set from the slot at the next upsert (settle); until then, readers of
	// done bits read that one slot instead.
	pend  int
	pendW *uint64

	mem     *tableMem // where table chunks come from and go back to
	touched uint64    // see upsertBatch
}

// keyStorage is how an index stores keys of a type.
type keyStorage uint8

const (
	kindWords keyStorage = iota // keys in the entries; the table holds words
	kindStr                     // strings: in the arena; the table holds words
	kindKey                     // 8 bytes or less, no pointers: keys in the table too
)

func storageOf[K comparable]() keyStorage {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.String:
		return kindStr
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return kindKey
	}
	return kindWords
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
	// Entries come in chunks of chunkLen (1 MiB of int64 entries): large
	// enough that the chunk lookup is a cached read, small enough to clear
	// in tens of microseconds. Table chunks are tableChunkBytes.
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
	return newIndexMem(hash, hint, false)
}

// newIndexMem is newIndex; with goMem, the tables are in ordinary Go
// memory even where they could be mapped (tests of that backend).
func newIndexMem[K comparable](hash func(K) uint64, hint int, goMem bool) *index[K] {
	x := &index[K]{hash: hash, kind: storageOf[K](), mem: &tableMem{goOnly: goMem}}
	x.str = x.kind == kindStr
	// A backstop: an index dropped without Close (Inspect's, a Runner the
	// caller never closed) gives its mapped memory back when collected.
	runtime.AddCleanup(x, (*tableMem).freeAll, x.mem)
	x.reset(hint)
	return x
}

// reset empties the index, gives its mapped memory back and sizes it for
// hint keys.
func (x *index[K]) reset(hint int) {
	x.cur, x.old, x.kcur, x.kold = table[uint64]{}, table[uint64]{}, table[kslot[K]]{}, table[kslot[K]]{}
	x.pend, x.pendW = -1, nil
	x.mem.freeAll()
	// The table first: see the note in Runner.load on the order of Open's
	// large allocations.
	if x.kind == kindKey {
		x.kcur = newTable[kslot[K]](hint, true, x.mem)
	} else {
		x.cur = newTable[uint64](hint, true, x.mem)
	}
	x.oldN, x.moved = 0, 0
	x.n = 0
	x.arena = strArena{}
	first := min(max(hint, 8), chunkLen)
	if x.kind == kindStr {
		x.strs = [][]strEntry{make([]strEntry, 0, first)}
		x.ents = nil
	} else {
		x.ents = [][]entry[K]{make([]entry[K], 0, first)}
		x.strs = nil
	}
}

func (x *index[K]) len() int { return x.n }

// growing reports whether an old table still holds keys not yet moved.
func (x *index[K]) growing() bool { return x.oldN > 0 }

// keyIs reports whether the entry at p holds k.
func (x *index[K]) keyIs(p int, k K) bool {
	if x.str {
		return x.arena.get(x.strs[p>>chunkBits][p&chunkMask].ref) == *(*string)(unsafe.Pointer(&k))
	}
	return x.ents[p>>chunkBits][p&chunkMask].key == k
}

// keyAt returns the key at p. A string key's bytes are in the arena, which
// never changes them.
func (x *index[K]) keyAt(p int) K {
	if x.str {
		s := x.arena.get(x.strs[p>>chunkBits][p&chunkMask].ref)
		return *(*K)(unsafe.Pointer(&s))
	}
	return x.ents[p>>chunkBits][p&chunkMask].key
}

func (x *index[K]) slotAt(p int) *slot {
	if x.str {
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

// findWordIn returns the position of k, of hash h, in the word table t, or
// -1.
func (x *index[K]) findWordIn(t *table[uint64], k K, h uint64) int {
	p, _ := x.probeWord(t, k, h)
	return p
}

// probeWord returns the position of k, of hash h, in the word table t, or
// -1 and the empty slot the probe ended at, where k would be placed (see
// upsertHashed).
func (x *index[K]) probeWord(t *table[uint64], k K, h uint64) (int, uint64) {
	tag := h >> posBits
	for i := t.home(h); ; i = t.next(i) {
		w := t.word(i)
		if w == 0 {
			return -1, i
		}
		if w>>posBits == tag {
			if p := int(w&posMask) - 1; x.keyIs(p, k) {
				return p, i
			}
		}
	}
}

// keySlot returns k's slot in the key tables (kindKey), or nil.
func (x *index[K]) keySlot(k K, h uint64) *kslot[K] {
	if s := findKey(&x.kcur, k, h); s != nil || !x.growing() {
		return s
	}
	return findKey(&x.kold, k, h)
}

func (x *index[K]) findHashed(k K, h uint64) int {
	if x.kind == kindKey {
		if s := x.keySlot(k, h); s != nil {
			return int(s.w&posMask) - 1
		}
		return -1
	}
	if p := x.findWordIn(&x.cur, k, h); p >= 0 || !x.growing() {
		return p
	}
	return x.findWordIn(&x.old, k, h)
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

// upsert returns a pointer to k's slot, adding k if it is absent. A new
// key's slot is 0, which no stored key has (see slot): the caller must set
// it, and may write the slot only until its next call that changes the
// index (upsert, upsertBatch, reset): the key table copies its done bit
// then (see pend).
func (x *index[K]) upsert(k K) *slot {
	return x.upsertHashed(k, x.hash(k))
}

// upsertBatch upserts keys in order, calling fn with each one's slot as
// upsert returns it. hs[i] must be x.hash(keys[i]): Open computes the hashes
// on its parsing goroutines, where the keys' bytes are still in cache.
//
// With millions of keys the table is far larger than the CPU caches and
// than what its TLB maps, and a lookup that waits for memory between two
// keys costs a few hundred nanoseconds (measured in Open). So the table is
// read ahead of the upserts:
//
//   - Where the CPU has a prefetch instruction (canPrefetch), the home slots
//     of the keys upsertAhead keys ahead are prefetched, a group of
//     upsertGroup at a time, while the upserts go on: software pipelining.
//     A prefetch does not wait for its line, so many are in flight at
//     once, and the line and its page's translation are still in the CPU's
//     caches and TLB when the upsert reaches them, a few microseconds later.
//     Reading a whole batch of loadBatchSize first (the fallback below)
//     touched more pages than the TLB holds: with nested paging (a virtual
//     machine) each key then paid for two page walks, one in the reads and
//     another in its upsert. In BenchmarkIndexOpenUpsert at 10M int64 keys
//     this cut the upserts' CPU time by about 45%; plain loads in place of
//     the prefetches doubled it instead (a load that misses holds up the
//     upsert code behind it), and smaller batches read first saved about
//     half as much.
//   - Elsewhere the slots of the whole batch are read first, with no branch
//     on what they hold, so that the CPU fetches them all at once.
func (x *index[K]) upsertBatch(keys []K, hs []uint64, fn func(i int, sp *slot)) {
	hs = hs[:len(keys)]
	if !canPrefetch {
		x.touched += x.touchSlots(hs) // keep the loads: their value is never used
		for i, k := range keys {
			fn(i, x.upsertHashed(k, hs[i]))
		}
		return
	}
	var addrs [upsertGroup]uintptr
	for g := 0; g < upsertAhead && g < len(hs); g += upsertGroup {
		x.prefetchSlots(hs[g:min(g+upsertGroup, len(hs))], &addrs)
	}
	for g := 0; g < len(keys); g += upsertGroup {
		if a := g + upsertAhead; a < len(hs) {
			x.prefetchSlots(hs[a:min(a+upsertGroup, len(hs))], &addrs)
		}
		for i := g; i < min(g+upsertGroup, len(keys)); i++ {
			fn(i, x.upsertHashed(keys[i], hs[i]))
		}
	}
}

// upsertGroup keys' slots are prefetched at once, upsertAhead keys ahead of
// the upserts (see upsertBatch). Groups of 8 and 16 kept 8 to 32 keys in
// flight and measured alike; 32 and 64 were slower (the lines or their
// translations were gone again by the time they were used).
const (
	upsertGroup = 16
	upsertAhead = 2 * upsertGroup
)

// prefetchSlots prefetches the home table slot of each hash in hs (at most
// upsertGroup); addrs is room for their addresses.
func (x *index[K]) prefetchSlots(hs []uint64, addrs *[upsertGroup]uintptr) {
	hs = hs[:min(len(hs), upsertGroup)]
	if x.kind == kindKey {
		for i, h := range hs {
			addrs[i] = x.kcur.addr(h)
		}
	} else {
		for i, h := range hs {
			addrs[i] = x.cur.addr(h)
		}
	}
	prefetch(addrs[:len(hs)])
}

// touchSlots reads the home table slot of each hash in hs and returns a sum
// of what it read, so that the loads are not optimised away.
func (x *index[K]) touchSlots(hs []uint64) uint64 {
	var sum uint64
	if x.kind == kindKey {
		for _, h := range hs {
			sum += x.kcur.word(x.kcur.home(h))
		}
		return sum
	}
	for _, h := range hs {
		sum += x.cur.word(x.cur.home(h))
	}
	return sum
}

// settle copies the done bit of the slot the last upsert returned, which
// its caller has written by now, into that key's key table word.
func (x *index[K]) settle() {
	if x.pendW != nil {
		w := *x.pendW &^ kslotDone
		if x.slotAt(x.pend).done() {
			w |= kslotDone
		}
		*x.pendW = w
		x.pend, x.pendW = -1, nil
	}
}

// doneAt reports whether the key at p, whose key table word is w, is
// completed.
func (x *index[K]) doneAt(p int, w uint64) bool {
	if p == x.pend {
		return x.slotAt(p).done()
	}
	return w&kslotDone != 0
}

func (x *index[K]) upsertHashed(k K, h uint64) *slot {
	x.settle()
	x.mem.freeRetired(1)
	// One probe finds k or the empty slot where it goes; while the table
	// is not growing and has room, a new key is placed there, instead of
	// walking from its home again (placeKey, placeWord).
	var free uint64
	if x.kind == kindKey {
		s, i := probeKey(&x.kcur, k, h)
		if s == nil && x.growing() {
			s = findKey(&x.kold, k, h)
		}
		if s != nil {
			p := int(s.w&posMask) - 1
			x.pend, x.pendW = p, &s.w
			return x.slotAt(p)
		}
		free = i
	} else {
		p, i := x.probeWord(&x.cur, k, h)
		if p < 0 && x.growing() {
			p = x.findWordIn(&x.old, k, h)
		}
		if p >= 0 {
			return x.slotAt(p)
		}
		free = i
	}
	if !x.growing() && x.n+1 <= x.limit() {
		p := x.n
		x.appendKey(k)
		if x.kind == kindKey {
			s := x.kcur.slotFor(free)
			s.key, s.w = k, uint64(p+1)
			x.pend, x.pendW = p, &s.w
		} else {
			*x.cur.slotFor(free) = h>>posBits<<posBits | uint64(p+1)
		}
		return x.slotAt(p)
	}
	// Migrating or growing writes to the current table: k's empty slot
	// may be taken or gone.
	if x.growing() {
		x.migrate(migrateStep)
	}
	if x.n+1 > x.limit() {
		x.grow()
	}
	p := x.n
	x.appendKey(k)
	if x.kind == kindKey {
		s := placeKey(&x.kcur, k, h, p, false)
		x.pend, x.pendW = p, &s.w
	} else {
		placeWord(&x.cur, h, p)
	}
	return x.slotAt(p)
}

// limit is the number of keys the current table holds before it grows.
func (x *index[K]) limit() int {
	if x.kind == kindKey {
		return x.kcur.limit()
	}
	return x.cur.limit()
}

// appendKey adds k as entry n. Chunks past the first are allocated whole;
// the first grows as a slice does, so that a small index stays small.
func (x *index[K]) appendKey(k K) {
	c := x.n >> chunkBits
	if x.kind == kindStr {
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
	if x.growing() {
		x.migrate(x.oldN) // finish the last growth first (not reached with migrateStep >= 1)
	}
	x.oldN, x.moved = x.n, 0
	if x.kind == kindKey {
		x.kold, x.kcur = x.kcur, newTable[kslot[K]](2*x.n, false, x.mem)
	} else {
		x.old, x.cur = x.cur, newTable[uint64](2*x.n, false, x.mem)
	}
	x.migrate(migrateStep)
}

// migrate moves up to n old entries into the current table, and retires
// the old table once all are there (its mapped chunks go back one per
// upsert: see tableMem.freeRetired). Lookups check the current table first
// and then the old one, so a key is found wherever it is meanwhile.
func (x *index[K]) migrate(n int) {
	end := min(x.oldN, x.moved+n)
	for p := x.moved; p < end; p++ {
		k := x.keyAt(p)
		if x.kind == kindKey {
			placeKey(&x.kcur, k, x.hash(k), p, x.slotAt(p).done())
		} else {
			placeWord(&x.cur, x.hash(k), p)
		}
	}
	x.moved = end
	if x.moved == x.oldN {
		x.kold.retire()
		x.old.retire()
		x.oldN, x.moved = 0, 0
		x.kold, x.old = table[kslot[K]]{}, table[uint64]{}
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
