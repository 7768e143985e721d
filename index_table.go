package checkpoint

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// A table is open addressing with linear probing over size slots, in
// chunks of tableChunkBytes. Its slots are of type S, either
//
//   - uint64, a word: 0 when empty, else the top tagBits of the key's hash
//     above the entry's position + 1, so that most probes that do not match
//     are rejected without touching the entries; or
//   - kslot[K], for keys of 8 bytes or less: a word (the entry's position +
//     1, and kslotDone if the key is completed) and the key itself, so that
//     a lookup needs no entry at all.
//
// Either way a slot begins with its word (word reads it there), and holds
// no pointer, so that its chunks may live outside the Go heap (tableMem).
type table[S any] struct {
	chunks [][]S    // a nil chunk is all empty: allocated when first written
	maps   [][]byte // maps[c] is chunk c's mapping, if it is not Go memory
	size   uint64
	shift  uint // slots per chunk: 1<<shift
	mem    *tableMem
}

// kslot is a slot of a key table. The word comes first: see table.
type kslot[K comparable] struct {
	w   uint64
	key K
}

const (
	posBits = 40 // up to 2^40-1 keys: far beyond what fits in memory
	posMask = 1<<posBits - 1
	tagBits = 64 - posBits

	// kslotDone is set in a key table word when the key is completed.
	kslotDone = 1 << 63

	// Table chunks are 2 MiB, a huge page: see tableMem. Small tables are
	// one smaller chunk.
	tableChunkBytes = 2 << 20
)

// tableSize is the number of slots that holds n keys at most 3/4 full: 16
// or more, and a whole number of chunks of chunkLen past one chunk.
func tableSize(n, chunkLen int) int {
	size := max(16, (4*n+2)/3+1)
	if size > chunkLen {
		size = (size + chunkLen - 1) / chunkLen * chunkLen
	}
	return size
}

// newTable makes a table for n keys. With eager, every chunk is allocated
// now; otherwise each is on its first write.
func newTable[S any](n int, eager bool, mem *tableMem) table[S] {
	var s S
	shift := uint(bits.TrailingZeros(uint(tableChunkBytes / unsafe.Sizeof(s))))
	size := tableSize(n, 1<<shift)
	chunks := (size + 1<<shift - 1) >> shift
	t := table[S]{size: uint64(size), shift: shift, mem: mem,
		chunks: make([][]S, chunks), maps: make([][]byte, chunks)}
	if eager {
		var mapped [][]byte
		for c := range t.chunks {
			t.chunks[c] = t.newChunk(c, true)
			if t.maps[c] != nil {
				mapped = append(mapped, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t.chunks[c]))), tableChunkBytes))
			}
		}
		prefault(mapped)
	}
	return t
}

// newChunk allocates chunk c; with eager, for Open, which then touches it
// (newTable). Memory fresh from the kernel is mapped on first use: read
// first, as the batched upserts do, a page faults twice (mapped to the zero
// page, then copied on the write), at random; written in order first, it
// faults once, in sequence. Profiles of Open showed those faults as the
// largest cost of the first reads, so Open's chunks are written once, front
// to back, before any upsert: Go memory here, mapped chunks by prefault.
//
// A chunk a save allocates (a growth's, when first written) is not: with
// 4 KiB pages, touching it would take its 512 faults inside that one save,
// and a save that places its key and moves migrateStep old ones can meet
// five new chunks. Measured while a checkpoint grew to 20M keys: saves of
// up to 649 faults and 26 ms of CPU, none left untouched. Its pages then
// fault one at a time, spread over the saves that write them.
func (t *table[S]) newChunk(c int, eager bool) []S {
	n := min(1<<t.shift, int(t.size)-c<<t.shift)
	var s S
	if b, m := t.mem.alloc(n*int(unsafe.Sizeof(s)), eager); b != nil {
		t.maps[c] = m
		return unsafe.Slice((*S)(unsafe.Pointer(unsafe.SliceData(b))), n)
	}
	w := make([]S, n)
	if eager {
		clear(w)
	}
	return w
}

// prefault writes a byte of every 4 KiB page of chunks, each chunk in
// order, on as many goroutines as there are cores (GOMAXPROCS, all ended
// when it returns). It was a tenth of Open's time on the caller's
// goroutine at 10M keys (0.22 s of page faults for a table of 213 MB),
// all of it before the first line is parsed, while the other cores had
// nothing to do yet.
func prefault(chunks [][]byte) {
	var next atomic.Int64
	touch := func() {
		for c := int(next.Add(1) - 1); c < len(chunks); c = int(next.Add(1) - 1) {
			b := chunks[c]
			for i := 0; i < len(b); i += 4096 {
				b[i] = 0
			}
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(chunks)) - 1 {
		wg.Go(touch)
	}
	touch()
	wg.Wait()
}

// retire hands t's mapped chunks to its tableMem, to be given back a few at
// a time; t must not be used afterwards.
func (t *table[S]) retire() {
	for _, m := range t.maps {
		if m != nil {
			t.mem.retire(m)
		}
	}
}

// limit is the number of keys the table holds before the index grows.
func (t *table[S]) limit() int { return int(t.size * 3 / 4) }

// home is the first slot to probe for hash h: the low posBits bits of h
// scaled to the table's size (a multiply, not a modulo), so that the tag,
// the top bits, stays independent of the position.
func (t *table[S]) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h<<tagBits, t.size)
	return hi
}

func (t *table[S]) next(i uint64) uint64 {
	if i++; i == t.size {
		return 0
	}
	return i
}

// at returns slot i, or nil if its chunk is not allocated (all empty).
func (t *table[S]) at(i uint64) *S {
	c := t.chunks[i>>t.shift]
	if c == nil {
		return nil
	}
	return &c[i&(1<<t.shift-1)]
}

// word returns slot i's word.
func (t *table[S]) word(i uint64) uint64 {
	if s := t.at(i); s != nil {
		return *(*uint64)(unsafe.Pointer(s))
	}
	return 0
}

// free returns slot i, empty, for a key of hash h that is not in t,
// allocating its chunk if needed.
func (t *table[S]) free(h uint64) *S {
	i := t.home(h)
	for t.word(i) != 0 {
		i = t.next(i)
	}
	return t.slotFor(i)
}

// slotFor returns slot i, allocating its chunk if needed.
func (t *table[S]) slotFor(i uint64) *S {
	c := &t.chunks[i>>t.shift]
	if *c == nil {
		*c = t.newChunk(int(i>>t.shift), false)
	}
	return &(*c)[i&(1<<t.shift-1)]
}

// placeWord puts position p, of a key with hash h that is not in t, into
// the word table t.
func placeWord(t *table[uint64], h uint64, p int) {
	*(*uint64)(unsafe.Pointer(t.free(h))) = h>>posBits<<posBits | uint64(p+1)
}

// placeKey puts k, of hash h and position p, which is not in t, into the
// key table t, and returns its slot.
func placeKey[K comparable](t *table[kslot[K]], k K, h uint64, p int, done bool) *kslot[K] {
	s := t.free(h)
	s.key, s.w = k, uint64(p+1)
	if done {
		s.w |= kslotDone
	}
	return s
}

// findKey returns k's slot in the key table t, or nil.
func findKey[K comparable](t *table[kslot[K]], k K, h uint64) *kslot[K] {
	s, _ := probeKey(t, k, h)
	return s
}

// probeKey returns k's slot in the key table t, or nil and the empty slot
// the probe ended at, where k would be placed (see upsertHashed).
func probeKey[K comparable](t *table[kslot[K]], k K, h uint64) (*kslot[K], uint64) {
	for i := t.home(h); ; i = t.next(i) {
		s := t.at(i)
		if s == nil || s.w == 0 {
			return nil, i
		}
		if s.key == k {
			return s, i
		}
	}
}

// addr returns the address of the home slot of hash h, for prefetch: 0 if
// its chunk is not allocated (prefetch ignores any address it cannot use).
func (t *table[S]) addr(h uint64) uintptr {
	if s := t.at(t.home(h)); s != nil {
		return uintptr(unsafe.Pointer(s))
	}
	return 0
}

// tableMem is where an index's table chunks come from: memory mapped apart
// from the Go heap where the system allows it (mapTable), else Go memory.
// Mapped chunks are 2 MiB, aligned and marked for transparent huge pages:
// a random lookup in a table of hundreds of megabytes then misses the
// cache once, not also the TLB, which 4 KiB pages cover a few MiB of.
// Only pointer-free slots live there, and only the index refers to them.
//
// Mapped memory is given back by the index: the old table's after a growth
// a chunk per upsert (so no save unmaps hundreds of megabytes at once),
// everything on reset (Close, Clear), and by a cleanup of the index as a
// backstop. It is not safe for concurrent use.
type tableMem struct {
	goOnly  bool             // tests: Go memory only
	live    map[*byte][]byte // every mapping not yet unmapped, by its first byte
	retired [][]byte         // mappings of retired tables, to unmap
}

// alloc returns size bytes of mapped, zeroed memory (with huge, marked for
// huge pages; see mapTable), and the mapping to give back, or nils where
// chunks are Go memory.
func (m *tableMem) alloc(size int, huge bool) (b, mapping []byte) {
	if m.goOnly || size != tableChunkBytes {
		return nil, nil
	}
	b, mapping = mapTable(size, huge)
	if b == nil {
		return nil, nil
	}
	if m.live == nil {
		m.live = map[*byte][]byte{}
	}
	m.live[unsafe.SliceData(mapping)] = mapping
	return b, mapping
}

func (m *tableMem) retire(mapping []byte) { m.retired = append(m.retired, mapping) }

// freeRetired unmaps up to n retired mappings.
func (m *tableMem) freeRetired(n int) {
	for ; n > 0 && len(m.retired) > 0; n-- {
		last := m.retired[len(m.retired)-1]
		m.retired = m.retired[:len(m.retired)-1]
		m.free(last)
	}
}

func (m *tableMem) free(mapping []byte) {
	delete(m.live, unsafe.SliceData(mapping))
	unmapTable(mapping)
}

// freeAll unmaps every mapping: no table may use them afterwards.
func (m *tableMem) freeAll() {
	for _, mapping := range m.live {
		unmapTable(mapping)
	}
	clear(m.live)
	m.retired = nil
}
