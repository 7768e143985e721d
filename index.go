package checkpoint

import "math/bits"

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
//     takes one key at a time.
//
// Memory is about what the map took: 16 bytes per int64 entry plus 8 per
// table word at most 3/4 full, about 31 bytes per key at 10 million.
//
// Keys are never removed one by one (a key keeps its slot until Clear), so
// the table needs no tombstones. It is not safe for concurrent use; the
// runner's mutex guards it.
type index[K comparable] struct {
	hash    func(K) uint64
	entries []entry[K] // in order of first appearance
	// table is open addressing with linear probing. A word is 0 when empty,
	// else the top tagBits of the key's hash above the entry's position + 1,
	// so most probes that do not match are rejected without touching
	// entries.
	table []uint64
	mask  uint64 // len(table) - 1; len(table) is a power of two

	touched uint64 // see upsertBatch
}

type entry[K comparable] struct {
	key K
	s   slot
}

const (
	posBits = 40 // up to 2^40-1 keys: far beyond what fits in memory
	posMask = 1<<posBits - 1
	tagBits = 64 - posBits
)

func newIndex[K comparable](hash func(K) uint64, hint int) *index[K] {
	x := &index[K]{hash: hash}
	x.reset(hint)
	return x
}

// reset empties the index and sizes it for hint keys.
func (x *index[K]) reset(hint int) {
	// The table first: see the note in Runner.load on the order of Open's
	// large allocations.
	x.table = newTable(tableSize(hint))
	x.mask = uint64(len(x.table) - 1)
	x.entries = make([]entry[K], 0, max(hint, 8))
}

// newTable allocates a table of n words and writes it once, front to back.
// Memory fresh from the kernel is mapped on first use: read first, as the
// batched upserts do, a page faults twice (mapped to the zero page, then
// copied on the write), at random; written in order first, it faults once,
// in sequence. Profiles of Open and of grow showed those faults as the
// largest cost of the first reads.
func newTable(n int) []uint64 {
	t := make([]uint64, n)
	clear(t)
	return t
}

// tableSize is the smallest power of two, 16 or more, that holds n keys at
// most 3/4 full.
func tableSize(n int) int {
	return max(16, 1<<bits.Len64(uint64(n+n/3)))
}

func (x *index[K]) len() int { return len(x.entries) }

// find returns the position of k in entries, or -1.
func (x *index[K]) find(k K) int {
	h := x.hash(k)
	tag := h >> posBits
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		w := x.table[i]
		if w == 0 {
			return -1
		}
		if w>>posBits == tag {
			if p := int(w&posMask) - 1; x.entries[p].key == k {
				return p
			}
		}
	}
}

// get returns k's slot; ok is false if k is not in the index.
func (x *index[K]) get(k K) (s slot, ok bool) {
	if p := x.find(k); p >= 0 {
		return x.entries[p].s, true
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
// were added. While keys come in that order it checks entries[c.pos] first
// and leaves the cursor just past it: one comparison, no hashing. When they
// don't (shuffled items), it stops looking there, so a random order costs
// no more than find, until a hashed key lands on the cursor again.
func (x *index[K]) findNear(k K, c *cursor) int {
	if !c.off && c.pos < len(x.entries) && x.entries[c.pos].key == k {
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
		return x.entries[p].s, true
	}
	return 0, false
}

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
		touched += x.table[h&x.mask]
	}
	x.touched += touched // keep the loads: their value is never used
	for i, k := range keys {
		fn(i, x.upsertHashed(k, hs[i]))
	}
}

func (x *index[K]) upsertHashed(k K, h uint64) *slot {
	tag := h >> posBits
	i := h & x.mask
	for ; ; i = (i + 1) & x.mask {
		w := x.table[i]
		if w == 0 {
			break
		}
		if w>>posBits == tag {
			if p := int(w&posMask) - 1; x.entries[p].key == k {
				return &x.entries[p].s
			}
		}
	}
	if n := len(x.entries) + 1; n > len(x.table)/4*3 {
		x.grow()
		// Find the new home of k in the bigger table.
		for i = h & x.mask; x.table[i] != 0; i = (i + 1) & x.mask {
		}
	}
	x.entries = append(x.entries, entry[K]{key: k})
	x.table[i] = tag<<posBits | uint64(len(x.entries))
	return &x.entries[len(x.entries)-1].s
}

// grow doubles the table and places every key again. It runs under the
// runner's lock (in SaveResult) and stops saves while it runs, so it works
// in batches as upsertBatch does: hash a batch and read its new table words
// first, then place it. That roughly halves the pause (about half a second
// for 12 million keys here).
func (x *index[K]) grow() {
	x.table = newTable(2 * len(x.table))
	x.mask = uint64(len(x.table) - 1)
	var hs [512]uint64
	for start := 0; start < len(x.entries); start += len(hs) {
		batch := x.entries[start:min(start+len(hs), len(x.entries))]
		var touched uint64
		for i := range batch {
			h := x.hash(batch[i].key)
			hs[i] = h
			touched += x.table[h&x.mask]
		}
		x.touched += touched
		for i, h := range hs[:len(batch)] {
			j := h & x.mask
			for x.table[j] != 0 {
				j = (j + 1) & x.mask
			}
			x.table[j] = h>>posBits<<posBits | uint64(start+i+1)
		}
	}
}
