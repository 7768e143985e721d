package checkpoint

import (
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withoutMmap writes slots with WriteAt, as on Windows.
func withoutMmap() Option { return func(o *options) { o.ext.noMmap = true } }

var flightBackends = []struct {
	name string
	opts []Option
}{{"mmap", nil}, {"writeat", []Option{withoutMmap()}}}

type textKey struct{ A, B int }

func (k textKey) MarshalText() ([]byte, error) {
	return []byte(strings.Repeat("t", k.A) + ":" + string(rune('0'+k.B))), nil
}

func (k *textKey) UnmarshalText(b []byte) error {
	s := string(b)
	i := strings.IndexByte(s, ':')
	if i < 0 || len(s) != i+2 {
		return errors.New("bad text key")
	}
	k.A, k.B = i, int(s[i+1]-'0')
	return nil
}

type structKey struct {
	Name string
	N    int
}

type namedString string

// crashedAt iterates over items with WithInFlightIterate and snapshots the
// files while the body of item at runs (as a kill then would leave them);
// it returns the keys ReadInFlight finds in flight in the snapshot and the
// Crashed of an Open of it. The items before at are saved.
func crashedAt[K comparable](t *testing.T, items []K, at int, opts ...Option) ([]json.RawMessage, []Crash[K]) {
	t.Helper()
	dir := t.TempDir()
	r, err := Open[K, K]("k", append([]Option{WithDir(dir), flQuiet(), WithInFlightIterate()}, opts...)...)
	require.NoError(t, err)
	var snap string
	i := 0
	for k := range r.Iterate(items, func(k K) K { return k }) {
		if i == at {
			snap = crashSnapshot(t, dir)
			break
		}
		require.NoError(t, r.SaveResult(k, i))
		i++
	}
	require.NoError(t, r.Close())
	require.NotEmpty(t, snap, "the loop never reached item %d", at)
	st, err := ReadInFlight(snap, "k")
	require.NoError(t, err)
	r2, err := Open[K, int]("k", append([]Option{WithDir(snap), flQuiet()}, opts...)...)
	require.NoError(t, err)
	defer r2.Close()
	return st.InFlight, r2.Crashed()
}

// checkKeyForm checks that key, in flight at a crash after other, is read
// back as itself and as its JSON, on both kinds of slot file.
func checkKeyForm[K comparable](t *testing.T, other, key K) {
	t.Helper()
	codec, err := newKeyCodec[K]()
	require.NoError(t, err)
	want, err := codec.encode(nil, key)
	require.NoError(t, err)
	for _, b := range flightBackends {
		t.Run(b.name, func(t *testing.T) {
			inFlight, crashed := crashedAt(t, []K{other, key}, 1, b.opts...)
			require.Len(t, inFlight, 1)
			assert.Equal(t, string(want), string(inFlight[0]))
			assert.Equal(t, []Crash[K]{{Key: key, Crashes: 1}}, crashed)
		})
	}
}

// Every kind of key, and keys longer than a page (to several pages), is
// tracked and comes back as itself, mapped or written with WriteAt.
func TestInFlightKeyForms(t *testing.T) {
	long := strings.Repeat("é-long key ", 1500) // 18 KB: five pages
	t.Run("int8", func(t *testing.T) { checkKeyForm[int8](t, 1, -128) })
	t.Run("int16", func(t *testing.T) { checkKeyForm[int16](t, 1, -30000) })
	t.Run("int32", func(t *testing.T) { checkKeyForm[int32](t, 1, -2_000_000_000) })
	t.Run("int", func(t *testing.T) { checkKeyForm[int](t, 1, math.MinInt) })
	t.Run("uint8", func(t *testing.T) { checkKeyForm[uint8](t, 1, 255) })
	t.Run("uint16", func(t *testing.T) { checkKeyForm[uint16](t, 1, 65535) })
	t.Run("uint32", func(t *testing.T) { checkKeyForm[uint32](t, 1, 4_000_000_000) })
	t.Run("uint64", func(t *testing.T) { checkKeyForm[uint64](t, 1, 1<<64-1) })
	t.Run("float32", func(t *testing.T) { checkKeyForm[float32](t, 1, 0.1) })
	t.Run("float64", func(t *testing.T) { checkKeyForm[float64](t, 1, -2.5e-300) })
	t.Run("bool", func(t *testing.T) { checkKeyForm[bool](t, false, true) })
	t.Run("string", func(t *testing.T) { checkKeyForm[string](t, "a", "b \"quoted\" é\n") })
	t.Run("empty string", func(t *testing.T) { checkKeyForm[string](t, "a", "") })
	t.Run("named string", func(t *testing.T) { checkKeyForm[namedString](t, "a", "b") })
	t.Run("struct", func(t *testing.T) { checkKeyForm[structKey](t, structKey{"a", 1}, structKey{"b", 2}) })
	t.Run("text marshaler", func(t *testing.T) { checkKeyForm[textKey](t, textKey{1, 1}, textKey{2, 3}) })
	t.Run("string one page", func(t *testing.T) { checkKeyForm[string](t, "a", strings.Repeat("x", flightPageRoom-2)) })
	t.Run("string page plus one", func(t *testing.T) { checkKeyForm[string](t, "a", strings.Repeat("x", flightPageRoom+1)) })
	t.Run("long string", func(t *testing.T) { checkKeyForm[string](t, "a", long) })
	t.Run("long struct", func(t *testing.T) { checkKeyForm[structKey](t, structKey{"a", 1}, structKey{long, 2}) })
	t.Run("long text marshaler", func(t *testing.T) { checkKeyForm[textKey](t, textKey{1, 1}, textKey{20_000, 4}) })
}

// A worker whose slot grew for a long key goes on with short ones, and the
// slot it left is handed out again: keys are never mixed up.
func TestInFlightLongThenShortKeys(t *testing.T) {
	long := strings.Repeat("L", 3*flightPage)
	for _, b := range flightBackends {
		t.Run(b.name, func(t *testing.T) {
			inFlight, crashed := crashedAt(t, []string{long, "short", long + "2", "s"}, 3, b.opts...)
			assert.Equal(t, []json.RawMessage{json.RawMessage(`"s"`)}, inFlight)
			assert.Equal(t, []Crash[string]{{Key: "s", Crashes: 1}}, crashed)
		})
	}
}

// The slot holds the key's state in the index when it started: a key
// saved in the body (even a failure of a key that had failed before) is
// not blamed; a key that failed earlier in the same loop and is in flight
// again is (a mark taken before its first failure would forgive it).
func TestInFlightJudgedByKeyState(t *testing.T) {
	for _, b := range flightBackends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				body    func(r *Runner[string, string], k string, n int)
				crashed []Crash[string]
			}{
				{"saved result", func(r *Runner[string, string], k string, n int) {
					require.NoError(t, r.SaveResult(k, n))
				}, nil},
				{"saved failure again", func(r *Runner[string, string], k string, n int) {
					require.NoError(t, r.SaveError(k, errors.New("again")))
				}, nil},
				{"nothing saved", func(*Runner[string, string], string, int) {}, []Crash[string]{{Key: "a", Crashes: 1}}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					dir := t.TempDir()
					r, err := Open[string, string]("j", append([]Option{WithDir(dir), flQuiet(), WithInFlightIterate()}, b.opts...)...)
					require.NoError(t, err)
					var snap string
					n := 0
					// "a" twice: it fails the first time and is yielded again.
					for k := range r.Iterate([]string{"a", "a"}, func(s string) string { return s }) {
						n++
						if n == 1 {
							require.NoError(t, r.SaveError(k, errors.New("first")))
							continue
						}
						tc.body(r, k, n)
						snap = crashSnapshot(t, dir) // the slot is still set
					}
					require.Equal(t, 2, n)
					require.NoError(t, r.Close())
					r2, err := Open[string, int]("j", WithDir(snap), flQuiet())
					require.NoError(t, err)
					defer r2.Close()
					assert.Equal(t, tc.crashed, r2.Crashed())
				})
			}
		})
	}
}

// IterateWithProgress tracks its items with WithInFlightIterate, and only
// then.
func TestInFlightIterateWithProgress(t *testing.T) {
	for _, b := range flightBackends {
		for _, track := range []bool{false, true} {
			dir := t.TempDir()
			opts := append([]Option{WithDir(dir), flQuiet(), WithProgressWriter(io.Discard)}, b.opts...)
			if track {
				opts = append(opts, WithInFlightIterate())
			}
			r, err := OpenBatch[int, int]("p", opts...)
			require.NoError(t, err)
			var snap string
			for i, item := range r.IterateWithProgress([]int{10, 11, 12}, procKey, "") {
				if i == 1 {
					snap = crashSnapshot(t, dir)
					break
				}
				require.NoError(t, r.SaveResult(item, item))
			}
			st, err := ReadInFlight(dir, "p")
			require.NoError(t, err)
			assert.Empty(t, st.InFlight, "the slot is cleared when the loop ends")
			require.NoError(t, r.Close())

			r2, err := Open[int, int]("p", WithDir(snap), flQuiet())
			require.NoError(t, err)
			if track {
				assert.Equal(t, []Crash[int]{{Key: 11, Crashes: 1}}, r2.Crashed(), b.name)
			} else {
				assert.Empty(t, r2.Crashed(), b.name)
			}
			require.NoError(t, r2.Close())
		}
	}
}

// putFlightSlot writes a v2 slot at page pg of b (b must be long enough).
func putFlightSlot(b []byte, pg int, form uint64, key []byte, then slot, withCRC bool) {
	s := &flightSlot{ff: &flightFile{}, mem: b[pg*flightPage:], pages: len(b)/flightPage - pg}
	c := copy(s.mem[flightHeader:flightPage], key)
	for p := flightPage; c < len(key); p += flightPage {
		c += copy(s.mem[p+8:p+flightPage], key[c:])
	}
	putU64(s.mem[8:], uint64(then))
	head := flightHead(form, len(key))
	if withCRC {
		// as writeSet computes it, over word 1 and the key
		crc := crc32.ChecksumIEEE(append(append([]byte(nil), s.mem[8:16]...), key...))
		putU64(s.mem[16:], uint64(crc))
		head |= flightHasCRC
	}
	putU64(s.mem, head)
}

// Slots that do not hold a whole, valid key are left out: a torn write (the
// CRC does not match), a key running past the end of the file or into
// another slot, an impossible form.
func TestReadFlightSlotsV2(t *testing.T) {
	long := []byte(`"` + strings.Repeat("y", 2*flightPage) + `"`)
	for _, tc := range []struct {
		name  string
		pages int
		write func(b []byte)
		want  []string
	}{
		{"int and string", 4, func(b []byte) {
			putFlightSlot(b, 0, formInt, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 5, false)
			putFlightSlot(b, 2, formString, []byte(`a"b`), 0, true)
		}, []string{`-2`, `"a\"b"`}},
		{"long key", 4, func(b []byte) { putFlightSlot(b, 0, formJSON, long, 0, true) }, []string{string(long)}},
		{"bad crc", 1, func(b []byte) {
			putFlightSlot(b, 0, formJSON, []byte(`"k"`), 0, true)
			b[flightHeader] = '!'
		}, nil},
		{"past the end", 2, func(b []byte) {
			big := make([]byte, 4*flightPage)
			putFlightSlot(big, 0, formJSON, long, 0, false)
			copy(b, big)
		}, nil},
		{"into another slot", 4, func(b []byte) {
			putFlightSlot(b, 0, formJSON, long, 0, false)
			putFlightSlot(b, 1, formJSON, []byte(`1`), 0, false)
		}, []string{`1`}},
		{"unknown form", 1, func(b []byte) { putFlightSlot(b, 0, 15, []byte(`1`), 0, false) }, nil},
		{"bool not 0 or 1", 1, func(b []byte) { putFlightSlot(b, 0, formBool, []byte{2}, 0, false) }, nil},
		{"string not UTF-8", 1, func(b []byte) { putFlightSlot(b, 0, formString, []byte{0xff}, 0, false) }, nil},
		{"NaN", 1, func(b []byte) {
			putFlightSlot(b, 0, formFloat64, []byte{1, 0, 0, 0, 0, 0, 0xf8, 0x7f}, 0, false)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, tc.pages*flightPage)
			tc.write(b)
			path := filepath.Join(t.TempDir(), "x_inflight")
			require.NoError(t, os.WriteFile(path, b, 0o644))
			recs, err := readFlightSlots(path)
			require.NoError(t, err)
			var got []string
			for _, r := range recs {
				got = append(got, string(r.key))
				assert.True(t, r.v2)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}
