package checkpoint

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSaveResultAllocatesNothing: a SaveResult allocates nothing of its own,
// whether the key is new or saved again, for integer and string keys, so that
// a job saving millions of results gives the collector no work per save (and
// no save pays a mark assist for its own garbage). A new key's share of the
// index's chunks, allocated once per 65,536 keys or per growth, rounds down
// to 0 over the runs. The result is boxed once, outside the loop, as a
// caller's value usually is.
func TestSaveResultAllocatesNothing(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops pooled buffers at random under -race; the count is meaningless there")
	}
	var result any = benchRecord{ID: 7, Name: "item-7", Score: 1.5, Tags: []string{"a", "b"}, Passed: true}
	const runs = 2000
	t.Run("int64", func(t *testing.T) {
		r := openQuiet[int64, benchRecord](t, t.TempDir(), "ints")
		defer r.Close()
		var next int64
		newKey := testing.AllocsPerRun(runs, func() {
			require.NoError(t, r.SaveResult(next, result))
			next++
		})
		var again int64
		savedKey := testing.AllocsPerRun(runs, func() {
			require.NoError(t, r.SaveResult(again%next, result))
			again++
		})
		assert.Zero(t, newKey, "allocations per SaveResult of a new key")
		assert.Zero(t, savedKey, "allocations per SaveResult of a saved key")
	})
	t.Run("string", func(t *testing.T) {
		r := openQuiet[string, benchRecord](t, t.TempDir(), "strings")
		defer r.Close()
		keys := make([]string, 2*runs+2) // built outside the measured calls
		for i := range keys {
			keys[i] = benchStringKey(i)
		}
		var next int
		newKey := testing.AllocsPerRun(runs, func() {
			require.NoError(t, r.SaveResult(keys[next], result))
			next++
		})
		var again int
		savedKey := testing.AllocsPerRun(runs, func() {
			require.NoError(t, r.SaveResult(keys[again%next], result))
			again++
		})
		assert.Zero(t, newKey, "allocations per SaveResult of a new key")
		assert.Zero(t, savedKey, "allocations per SaveResult of a saved key")
	})
}
