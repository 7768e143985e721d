package checkpoint

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkIndexAgainstMap applies random upserts to an index and to a map and
// checks after each step that they agree, and that entries keep the order in
// which keys first appeared.
func checkIndexAgainstMap[K comparable](t *testing.T, hint int, ops int, key func(*rand.Rand) K) {
	t.Helper()
	codec, err := newKeyCodec[K]()
	require.NoError(t, err)
	x := newIndex(codec.hash, hint)
	want := map[K]slot{}
	var order []K
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ops {
		k := key(rng)
		s := slot(i+1) | slotDone
		sp := x.upsert(k)
		old, seen := want[k]
		if seen {
			require.Equal(t, old, *sp, "slot of %v before the update", k)
		} else {
			require.Zero(t, *sp, "a new key's slot")
			order = append(order, k)
		}
		*sp = s
		want[k] = s
	}
	require.Equal(t, len(want), x.len())
	for k, s := range want {
		got, ok := x.get(k)
		require.True(t, ok, "key %v", k)
		require.Equal(t, s, got, "key %v", k)
	}
	for i, k := range order {
		require.Equal(t, k, x.keyAt(i), "entry %d", i)
		require.Equal(t, i, x.find(k))
	}
	// Keys never added are not found.
	for range 1000 {
		k := key(rng)
		if _, ok := want[k]; !ok {
			_, found := x.get(k)
			require.False(t, found, "absent key %v", k)
		}
	}
}

func TestIndexAgainstMap(t *testing.T) {
	t.Run("int64 dense, presized", func(t *testing.T) {
		checkIndexAgainstMap(t, 5000, 20000, func(r *rand.Rand) int64 { return r.Int64N(5000) })
	})
	t.Run("int64 sparse, grows from empty", func(t *testing.T) {
		checkIndexAgainstMap(t, 0, 50000, func(r *rand.Rand) int64 { return int64(r.Uint64()) })
	})
	t.Run("int8 covers every value", func(t *testing.T) {
		checkIndexAgainstMap(t, 0, 5000, func(r *rand.Rand) int8 { return int8(r.IntN(256)) })
	})
	t.Run("uint32", func(t *testing.T) {
		checkIndexAgainstMap(t, 10, 20000, func(r *rand.Rand) uint32 { return r.Uint32N(3000) })
	})
	t.Run("string", func(t *testing.T) {
		checkIndexAgainstMap(t, 100, 20000, func(r *rand.Rand) string { return fmt.Sprint("k", r.IntN(8000)) })
	})
	t.Run("struct", func(t *testing.T) {
		type pair struct {
			A string
			B int
		}
		checkIndexAgainstMap(t, 0, 10000, func(r *rand.Rand) pair { return pair{fmt.Sprint(r.IntN(50)), r.IntN(50)} })
	})
	t.Run("float64", func(t *testing.T) {
		checkIndexAgainstMap(t, 0, 10000, func(r *rand.Rand) float64 { return float64(r.IntN(3000)) / 4 })
	})
	t.Run("bool", func(t *testing.T) {
		checkIndexAgainstMap(t, 0, 100, func(r *rand.Rand) bool { return r.IntN(2) == 0 })
	})
}

func TestIndexFloatZeros(t *testing.T) {
	// +0 and -0 are == in Go, so they are one key, as in a map.
	codec, err := newKeyCodec[float64]()
	require.NoError(t, err)
	x := newIndex(codec.hash, 0)
	*x.upsert(0.0) = slotDone | 1
	s, ok := x.get(math.Copysign(0, -1))
	assert.True(t, ok)
	assert.Equal(t, slot(slotDone|1), s)
}

func TestIndexFindNear(t *testing.T) {
	codec, err := newKeyCodec[int]()
	require.NoError(t, err)
	x := newIndex(codec.hash, 0)
	for i := range 100 {
		*x.upsert(i) = slotDone | slot(i)
	}
	tests := []struct {
		name   string
		cursor cursor
		key    int
		want   int
		after  cursor
	}{
		{"next in order", cursor{pos: 10}, 10, 10, cursor{pos: 11}},
		{"jump ahead: hash from now on", cursor{pos: 10}, 50, 50, cursor{pos: 51, off: true}},
		{"jump back", cursor{pos: 50}, 3, 3, cursor{pos: 4, off: true}},
		{"absent key leaves the cursor", cursor{pos: 7}, 1000, -1, cursor{pos: 7}},
		{"absent key while hashing", cursor{pos: 7, off: true}, 1000, -1, cursor{pos: 7, off: true}},
		{"hashed key lands on the cursor: back in order", cursor{pos: 20, off: true}, 20, 20, cursor{pos: 21}},
		{"hashed key elsewhere: keep hashing", cursor{pos: 20, off: true}, 60, 60, cursor{pos: 61, off: true}},
		{"cursor past the end", cursor{pos: 100}, 99, 99, cursor{pos: 100, off: true}},
		{"cursor far past the end (after Clear)", cursor{pos: 5000}, 0, 0, cursor{pos: 1, off: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cursor
			assert.Equal(t, tt.want, x.findNear(tt.key, &c))
			assert.Equal(t, tt.after, c)
		})
	}
	// Any walk finds every key, whatever the order.
	rng := rand.New(rand.NewPCG(7, 8))
	var c cursor
	for range 10000 {
		k := rng.IntN(130)
		want := -1
		if k < 100 {
			want = k
		}
		if rng.IntN(3) > 0 && c.pos < 100 { // mostly in order
			k, want = c.pos, c.pos
		}
		require.Equal(t, want, x.findNear(k, &c), "key %d", k)
	}
}

func TestIndexResetAndBatch(t *testing.T) {
	codec, err := newKeyCodec[string]()
	require.NoError(t, err)
	x := newIndex(codec.hash, 4)
	keys := []string{"a", "b", "a", "c", "b", "a"}
	var seen []slot
	hs := make([]uint64, len(keys))
	for i, k := range keys {
		hs[i] = x.hash(k)
	}
	x.upsertBatch(keys, hs, func(i int, sp *slot) {
		seen = append(seen, *sp)
		*sp = slot(i + 1)
	})
	// Each key sees the slot its previous occurrence set, in order.
	assert.Equal(t, []slot{0, 0, 1, 0, 2, 3}, seen)
	assert.Equal(t, 3, x.len())
	s, _ := x.get("a")
	assert.Equal(t, slot(6), s)

	x.reset(0)
	assert.Equal(t, 0, x.len())
	_, ok := x.get("a")
	assert.False(t, ok)
	*x.upsert("z") = 1
	assert.Equal(t, 0, x.find("z"))
}

func TestTableSize(t *testing.T) {
	for _, n := range []int{0, 1, 5, 6, 7, 100, 49151, 49152, 1 << 20, 10_000_000} {
		for _, tb := range []interface {
			limit() int
		}{ptr(newTable[uint64](n, false, &tableMem{})), ptr(newTable[kslot[int64]](n, false, &tableMem{}))} {
			var size, chunk int
			switch tb := tb.(type) {
			case *table[uint64]:
				size, chunk = int(tb.size), 1<<tb.shift
				assert.Equal(t, tableChunkBytes/8, chunk)
			case *table[kslot[int64]]:
				size, chunk = int(tb.size), 1<<tb.shift
				assert.Equal(t, tableChunkBytes/16, chunk)
			}
			assert.LessOrEqual(t, n, tb.limit(), "room for %d keys at 3/4", n)
			if size > chunk {
				assert.Zero(t, size%chunk, "whole chunks for %d", n)
				assert.Less(t, size-chunk, (4*n+2)/3+1, "no more than a chunk beyond what %d keys need", n)
			} else {
				assert.LessOrEqual(t, size, max(16, (4*n+2)/3+1), "exact size for %d", n)
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestIndexGrowsIncrementally adds keys past several doublings and chunks
// of the table and of the entries, checking while each growth is under way
// (old and new tables both in use) that every key added so far is found
// once, at its position, and that an absent key is not.
func TestIndexGrowsIncrementally(t *testing.T) {
	codec, err := newKeyCodec[int64]()
	require.NoError(t, err)
	x := newIndex(codec.hash, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 3*chunkLen + 123
	migrating := 0
	for i := range int64(n) {
		sp := x.upsert(i * 7)
		require.Zero(t, *sp, "new key %d", i*7)
		*sp = slot(i + 1)
		if x.growing() {
			migrating++
		}
		j := rng.Int64N(i + 1)
		require.Equal(t, int(j), x.find(j*7), "key %d after adding %d", j*7, i*7)
		require.Equal(t, -1, x.find(j*7+1), "absent key")
	}
	assert.Positive(t, migrating, "some upserts ran while the table was growing")
	assert.Greater(t, len(x.ents), 3, "entries span chunks")
	for i := range int64(n) {
		s, ok := x.get(i * 7)
		require.True(t, ok)
		require.Equal(t, slot(i+1), s)
		require.Equal(t, i*7, x.keyAt(int(i)))
	}
}

// TestIndexStringArena: string keys live in the pointer-free arena, the
// empty key and keys too long for a block included, and come back equal.
func TestIndexStringArena(t *testing.T) {
	codec, err := newKeyCodec[string]()
	require.NoError(t, err)
	x := newIndex(codec.hash, 0)
	keys := []string{"", "a", strings.Repeat("b", refWhole-1), strings.Repeat("c", refWhole), strings.Repeat("d", 3<<20), "é\x00z"}
	for i := range 5000 {
		keys = append(keys, fmt.Sprintf("key-%d-%s", i, strings.Repeat("x", i%300)))
	}
	for i, k := range keys {
		*x.upsert(k) = slot(i + 1)
	}
	for i, k := range keys {
		require.Equal(t, i, x.find(k), "key of %d bytes", len(k))
		require.Equal(t, k, x.keyAt(i), "key of %d bytes", len(k))
	}
	_, ok := x.get("key-1-y")
	assert.False(t, ok)
	assert.Greater(t, len(x.arena.blocks), 3, "the keys took several blocks")
}

// TestIndexStringKeysAreNotObjects: string keys are copied into the arena,
// a few blocks, not kept as one heap object per key (nor pointers for the
// collector to trace): 200k keys, each a string of its own that the caller
// drops, leave far fewer than 200k live objects.
func TestIndexStringKeysAreNotObjects(t *testing.T) {
	codec, err := newKeyCodec[string]()
	require.NoError(t, err)
	const n = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newIndex(codec.hash, n)
	for i := range n {
		*x.upsert(fmt.Sprintf("key-%08d", i)) = slot(i + 1)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	assert.Less(t, int64(after.HeapObjects)-int64(before.HeapObjects), int64(1000), "live heap objects added by %d keys", n)
	require.Equal(t, n-1, x.find(fmt.Sprintf("key-%08d", n-1)))
}

// doneOf returns what doneAhead reports for each of keys: whether the key
// table (its done bits) says the key is completed.
func doneOf[K comparable](x *index[K], keys []K) []bool {
	var hs [prefetchLen]uint64
	var out []bool
	for len(keys) > 0 {
		b := keys[:min(len(keys), prefetchLen)]
		keys = keys[len(b):]
		for i, k := range b {
			hs[i] = x.hash(k)
		}
		var c cursor
		bits := x.doneAhead(b, &hs, &c)
		for i := range b {
			out = append(out, bits>>i&1 != 0)
		}
	}
	return out
}

// TestKeyTable: keys of 8 bytes or less live in the table itself (kindKey),
// with a done bit. Whatever the hash (spread, all colliding, all homed on
// the last slot so that probes wrap), the key's value (0 and -1 included,
// which an empty slot or an all-ones word could be taken for) and the
// memory (mapped or Go), every key added so far is found at its position,
// with its slot and done bit, while the table grows under the lookups;
// absent keys are not found; and reset (Clear, Close) forgets them all and
// gives the mapped memory back.
func TestKeyTable(t *testing.T) {
	codec, err := newKeyCodec[int64]()
	require.NoError(t, err)
	sentinels := []int64{0, -1, 1, math.MinInt64, math.MaxInt64, math.MinInt64 + 1, math.MaxInt64 - 1}
	tests := []struct {
		name   string
		hash   func(int64) uint64
		n      int // keys: the sentinels, then 7, 14, 21...
		goMem  bool
		mapped bool // chunks are mapped (Linux, tables past one chunk)
	}{
		{"sentinels", codec.hash, 0, false, false},
		{"all collide", func(int64) uint64 { return 12345 << tagBits }, 300, false, false},
		{"all homed on the last slot", func(int64) uint64 { return math.MaxUint64 }, 300, false, false},
		{"grows past chunks, mapped", codec.hash, 3*tableChunkBytes/16 + 99, false, runtime.GOOS == "linux"},
		{"grows past chunks, Go memory", codec.hash, 3*tableChunkBytes/16 + 99, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newIndexMem(tt.hash, 0, tt.goMem)
			require.Equal(t, kindKey, x.kind)
			keys := append([]int64(nil), sentinels...)
			for i := range tt.n {
				keys = append(keys, int64(i+1)*7)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			grew := 0
			pos := map[int64]int{}
			for i, k := range keys {
				if _, ok := x.get(k); ok {
					require.Failf(t, "found before it was added", "key %d", k)
				}
				sp := x.upsert(k)
				require.Zero(t, *sp, "new key %d", k)
				*sp = slot(i + 1) // completed when i is odd
				if i%2 == 1 {
					*sp |= slotDone
				}
				if x.growing() {
					grew++
				}
				pos[k] = i
				// A few keys added so far, the one just added among them.
				probe := []int64{k, keys[rng.IntN(i+1)], keys[rng.IntN(i+1)], k + 3}
				got := doneOf(x, probe)
				for j, pk := range probe {
					p, ok := pos[pk]
					if !ok {
						p = -1
					}
					require.Equal(t, p, x.find(pk), "position of %d after adding %d keys", pk, i+1)
					require.Equal(t, p >= 0 && p%2 == 1, got[j], "done bit of %d after adding %d keys", pk, i+1)
				}
			}
			if tt.n > 1000 {
				assert.Positive(t, grew, "some upserts ran while the table was growing")
			}
			for i, k := range keys {
				s, ok := x.get(k)
				require.True(t, ok, "key %d", k)
				require.Equal(t, slot(i+1)|slot(i%2)<<63, s, "slot of %d", k)
				require.Equal(t, k, x.keyAt(i))
			}
			// Every mapping left is one of the current table's chunks: the
			// old tables' went back, a chunk per upsert.
			for range 64 {
				*x.upsert(keys[0]) = 1
			}
			var chunks int
			for _, m := range x.kcur.maps {
				if m != nil {
					chunks++
				}
			}
			if tt.mapped {
				assert.Positive(t, chunks, "the table's chunks are mapped")
			} else {
				assert.Zero(t, chunks, "the table's chunks are Go memory")
			}
			assert.Len(t, x.mem.live, chunks, "mappings not yet given back")

			x.reset(0) // Clear
			assert.Empty(t, x.mem.live, "reset gives the mapped memory back")
			for _, k := range keys {
				_, ok := x.get(k)
				require.False(t, ok, "key %d after reset", k)
			}
			assert.Equal(t, []bool{false, false}, doneOf(x, keys[:2]))
			*x.upsert(keys[1]) = slotDone
			assert.Equal(t, 0, x.find(keys[1]), "usable after reset")
		})
	}
}

// TestKeyTableDoneBits: the done bit in a key table word follows the slot
// that its upsert returned, which the caller writes after upsert returns:
// right away (doneAhead reads that one slot), after the next upsert (the
// word has it), when a result turns into a failure and back, and after
// the key moved to a grown table.
func TestKeyTableDoneBits(t *testing.T) {
	codec, err := newKeyCodec[int64]()
	require.NoError(t, err)
	type step struct {
		key  int64
		set  slot // written through upsert's pointer
		want map[int64]bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"completed, then another key", []step{
			{1, slotDone | 5, map[int64]bool{1: true}},
			{2, 6, map[int64]bool{1: true, 2: false}},
		}},
		{"failed after completed", []step{
			{1, slotDone | 5, map[int64]bool{1: true}},
			{1, slot(1)<<attemptShift | 7, map[int64]bool{1: false}},
			{2, slotDone | 8, map[int64]bool{1: false, 2: true}},
			{1, slotDone | 9, map[int64]bool{1: true, 2: true}},
			{3, 10, map[int64]bool{1: true, 2: true, 3: false}},
		}},
		{"zero key, failed then completed", []step{
			{0, 3, map[int64]bool{0: false}},
			{-1, slotDone | 4, map[int64]bool{0: false, -1: true}},
			{0, slotDone | 5, map[int64]bool{0: true, -1: true}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newIndexMem(codec.hash, 0, true)
			for i, st := range tt.steps {
				*x.upsert(st.key) = st.set
				for k, want := range st.want {
					require.Equal(t, []bool{want}, doneOf(x, []int64{k}), "key %d after step %d", k, i)
				}
			}
			// Grow through several tables: every key moves, its bit with it.
			last := tt.steps[len(tt.steps)-1].want
			for i := range int64(1000) {
				*x.upsert(1000 + i) = slotDone
			}
			for k, want := range last {
				require.Equal(t, []bool{want}, doneOf(x, []int64{k}), "key %d after growth", k)
			}
		})
	}
}
