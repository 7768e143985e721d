package checkpoint

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUpsertBatchMatchesMap: upsertBatch (its slots prefetched a group
// ahead, and new keys placed where the probe for them ended) gives each key
// in a batch the slot its previous occurrence left, in order, for batches
// around the prefetch group's sizes, while the index grows (hint 0) and
// when it was sized (hint n).
func TestUpsertBatchMatchesMap(t *testing.T) {
	for _, batch := range []int{1, upsertGroup - 1, upsertGroup, upsertGroup + 1, upsertAhead + 1, 100, loadBatchSize} {
		for _, hint := range []int{0, 20_000} {
			t.Run(fmt.Sprintf("batch=%d/hint=%d", batch, hint), func(t *testing.T) {
				checkBatchAgainstMap(t, batch, hint, func(r *rand.Rand) int64 { return r.Int64N(15_000) })
				checkBatchAgainstMap(t, batch, hint, func(r *rand.Rand) string { return fmt.Sprint(r.IntN(15_000)) })
			})
		}
	}
}

func checkBatchAgainstMap[K comparable](t *testing.T, batch, hint int, key func(*rand.Rand) K) {
	t.Helper()
	codec, err := newKeyCodec[K]()
	require.NoError(t, err)
	x := newIndex(codec.hash, hint)
	defer x.reset(0)
	want := map[K]slot{}
	var order []K
	rng := rand.New(rand.NewPCG(5, uint64(batch)))
	const n = 20_000
	for done := 0; done < n; {
		keys := make([]K, min(batch, n-done))
		hs := make([]uint64, len(keys))
		for i := range keys {
			keys[i] = key(rng)
			hs[i] = codec.hash(keys[i])
		}
		calls := 0
		x.upsertBatch(keys, hs, func(i int, sp *slot) {
			require.Equal(t, calls, i, "keys in order")
			calls++
			k := keys[i]
			old, seen := want[k]
			if !seen {
				order = append(order, k)
			}
			require.Equal(t, old, *sp, "slot of %v", k)
			s := slot(done+i+1) | slotDone*slot(i%2)
			*sp = s
			want[k] = s
		})
		require.Equal(t, len(keys), calls)
		done += len(keys)
	}
	require.Equal(t, len(want), x.len())
	for i, k := range order {
		require.Equal(t, k, x.keyAt(i), "entry %d", i)
		got, ok := x.get(k)
		require.True(t, ok)
		require.Equal(t, want[k], got, "key %v", k)
	}
	require.Equal(t, doneOf(x, order), func() []bool {
		d := make([]bool, len(order))
		for i, k := range order {
			d[i] = want[k].done()
		}
		return d
	}(), "done bits")
}
