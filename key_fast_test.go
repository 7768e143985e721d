package checkpoint

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The integer fast paths must agree with strconv on every input: same value,
// or an error in both.
func TestDecodeIntFastPathMatchesStrconv(t *testing.T) {
	inputs := []string{
		"0", "7", "-0", "-1", "007", "42", "+42", "-", "+", "", " 1", "1 ", "1_000", "0x10", "1e3", "1.0",
		"127", "128", "-128", "-129", "255", "256", "32767", "32768", "-32768", "-32769",
		"2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
		"999999999999999999", "-999999999999999999", // 18 digits: the fast path
		"1000000000000000000", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616",
		"00000000000000000000000001", "１２", "1a", "a1",
	}
	check := func(t *testing.T, bits int, decode func([]byte) (int64, error), decodeU func([]byte) (uint64, error)) {
		for _, in := range inputs {
			for _, raw := range []string{in, `"` + in + `"`} {
				want, werr := strconv.ParseInt(in, 10, bits)
				got, err := decode([]byte(raw))
				if werr != nil {
					assert.Error(t, err, "int%d %q", bits, raw)
				} else if assert.NoError(t, err, "int%d %q", bits, raw) {
					assert.Equal(t, want, got, "int%d %q", bits, raw)
				}
				wantU, werr := strconv.ParseUint(in, 10, bits)
				gotU, err := decodeU([]byte(raw))
				if werr != nil {
					assert.Error(t, err, "uint%d %q", bits, raw)
				} else if assert.NoError(t, err, "uint%d %q", bits, raw) {
					assert.Equal(t, wantU, gotU, "uint%d %q", bits, raw)
				}
			}
		}
	}
	t.Run("8", func(t *testing.T) { check(t, 8, decodeAs[int8, int64], decodeAs[uint8, uint64]) })
	t.Run("16", func(t *testing.T) { check(t, 16, decodeAs[int16, int64], decodeAs[uint16, uint64]) })
	t.Run("32", func(t *testing.T) { check(t, 32, decodeAs[int32, int64], decodeAs[uint32, uint64]) })
	t.Run("64", func(t *testing.T) { check(t, 64, decodeAs[int64, int64], decodeAs[uint64, uint64]) })
	t.Run("int", func(t *testing.T) { check(t, strconv.IntSize, decodeAs[int, int64], decodeAs[uint, uint64]) })
}

type integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// decodeAs decodes raw as a key of type K and widens it, through both the
// plain decoder and the one Open uses, which must agree.
func decodeAs[K integer, W int64 | uint64](raw []byte) (W, error) {
	c, err := newKeyCodec[K]()
	if err != nil {
		return 0, err
	}
	k, err := c.decode(raw)
	k2, err2 := c.keep(raw, &keyArena{})
	if (err == nil) != (err2 == nil) || k != k2 {
		panic("decode and keep disagree on " + string(raw))
	}
	return W(k), err
}

func TestDecodeStringIn(t *testing.T) {
	c, err := newKeyCodec[string]()
	require.NoError(t, err)
	tests := []struct {
		raw     string
		want    string
		wantErr bool
	}{
		{`"doc-1"`, "doc-1", false},
		{`""`, "", false},
		{`"a\"b"`, `a"b`, false},
		{`"caf\u00e9"`, "café", false},
		{`"日本"`, "日本", false},
		{`42`, "42", false}, // a file written with integer keys
		{`"` + strings.Repeat("x", arenaMaxKey+1) + `"`, strings.Repeat("x", arenaMaxKey+1), false},
		{`"unterminated`, "", true},
		{`true`, "", true},
	}
	var arena keyArena
	for _, tt := range tests {
		t.Run(tt.raw[:min(len(tt.raw), 20)], func(t *testing.T) {
			got, err := c.keep([]byte(tt.raw), &arena)
			plain, perr := c.decode([]byte(tt.raw))
			if tt.wantErr {
				assert.Error(t, err)
				assert.Error(t, perr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, perr)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, plain, got)
		})
	}
}

// Keys carved from the arena must not change when the buffer they were
// decoded from is reused, when the arena moves on to new blocks, or across
// garbage collections.
func TestKeyArenaKeysStayIntact(t *testing.T) {
	type named string
	c, err := newKeyCodec[named]()
	require.NoError(t, err)
	var arena keyArena
	raw := make([]byte, 0, 64)
	var keys []named
	n := 3 * arenaBlock / 10 // spans several blocks
	for i := range n {
		raw = append(raw[:0], '"')
		raw = strconv.AppendInt(raw, int64(i), 10)
		raw = append(raw, '"')
		k, err := c.keep(raw, &arena)
		require.NoError(t, err)
		keys = append(keys, k)
		clear(raw[:cap(raw)]) // the scanner reuses its buffer
	}
	runtime.GC()
	for i, k := range keys {
		require.Equal(t, named(strconv.Itoa(i)), k)
	}
}

func TestKeyHashAgreesWithEquality(t *testing.T) {
	ints, err := newKeyCodec[int64]()
	require.NoError(t, err)
	assert.Equal(t, ints.hash(math.MaxInt64), ints.hash(math.MaxInt64))
	assert.NotEqual(t, ints.hash(1), ints.hash(2))
	other, err := newKeyCodec[int64]()
	require.NoError(t, err)
	assert.NotEqual(t, ints.hash(1), other.hash(1), "each codec has its own seed")

	strs, err := newKeyCodec[string]()
	require.NoError(t, err)
	a, b := "key-"+strconv.Itoa(7), "key-7"
	assert.Equal(t, strs.hash(a), strs.hash(b), "equal strings from different memory")

	type pair struct {
		A string
		B float64
	}
	pairs, err := newKeyCodec[pair]()
	require.NoError(t, err)
	assert.Equal(t, pairs.hash(pair{"x", 0}), pairs.hash(pair{"x", math.Copysign(0, -1)}))
}

func TestAppendTimestampMatchesAppendFormat(t *testing.T) {
	zones := []*time.Location{
		time.UTC, time.Local,
		time.FixedZone("nepal", 5*3600+45*60),
		time.FixedZone("newfoundland", -(3*3600 + 30*60)),
		time.FixedZone("lmt", -(0*3600 + 9*60 + 21)), // seconds in the offset
		time.FixedZone("far", 14*3600),
		time.FixedZone("west", -12*3600),
	}
	for _, name := range []string{"America/New_York", "Europe/Paris", "Australia/Lord_Howe"} {
		if loc, err := time.LoadLocation(name); err == nil {
			zones = append(zones, loc)
		}
	}
	times := []time.Time{
		time.Date(2026, 11, 23, 13, 47, 51, 518145999, time.UTC),
		time.Date(2026, 3, 29, 1, 59, 59, 999999999, time.UTC), // around DST changes
		time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // five-digit year: AppendFormat's way
		time.Date(-5, 6, 7, 8, 9, 10, 11000, time.UTC),
		time.Unix(0, 0),
		{},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		times = append(times, time.Unix(rng.Int64N(5e9)-1e9, rng.Int64N(1e9)))
	}
	for _, loc := range zones {
		for _, tm := range times {
			tm = tm.In(loc)
			want := tm.AppendFormat([]byte("x"), tsLayout)
			got := appendTimestamp([]byte("x"), tm)
			require.Equal(t, string(want), string(got), "%v in %v", tm, loc)
		}
	}
}

// The parser's shortcuts must give what the plain loops they replace give,
// on any input: random lines over an alphabet rich in JSON's special bytes.
func TestParserShortcutsMatchPlainLoops(t *testing.T) {
	plainSkipString := func(b []byte, i int) (int, bool) {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1, true
			}
		}
		return i, false
	}
	plainScalarEnd := func(c byte) bool {
		return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t'
	}
	const alphabet = `"\\ab1,:}] {[	-T`
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200000 {
		n := rng.IntN(48)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if n > 0 && rng.IntN(2) == 0 {
			b[0] = '"'
		}
		i := 0
		if n > 0 {
			i = rng.IntN(n)
		}
		gotEnd, gotOK := skipString(b, i)
		wantEnd, wantOK := plainSkipString(b, i)
		require.Equal(t, wantOK, gotOK, "skipString(%q, %d)", b, i)
		if wantOK {
			require.Equal(t, wantEnd, gotEnd, "skipString(%q, %d)", b, i)
		}
		end := rng.IntN(n + 1)
		require.Equal(t, bytes.LastIndexByte(b[:end], '"'), lastQuote(b, end), "lastQuote(%q, %d)", b, end)
	}
	for c := range 256 {
		require.Equal(t, plainScalarEnd(byte(c)), scalarEnd[c], "byte %q", c)
	}
	// Timestamps of every width the shortcut knows, and others.
	for _, ts := range []string{"2026-01-02T03:04:05.000000+01:00", "2026-01-02T03:04:05.123456", "2026-01-02T03:04:05", "2026-01-02T03:04:05.5", `x"y`, ""} {
		line := []byte(`{"key":1,"result":"a\"b","timestamp":"` + ts + `"}`)
		end := len(line) - 2
		require.Equal(t, bytes.LastIndexByte(line[:end], '"'), lastQuote(line, end), ts)
	}
}

// balancedReference is balanced as it was before its one-pass rewrite: it
// finds each string's end with IndexByte and counts the backslashes before a
// quote.
func balancedReference(b []byte) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			j := i + 1
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return false
				}
				j += k
				bs := 0
				for m := j - 1; m > i && b[m] == '\\'; m-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
				j++
			}
			i = j
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

func TestBalancedMatchesReference(t *testing.T) {
	fixed := []string{
		``, `1`, `"a"`, `"a\"b"`, `"a\\"`, `"a\\\"b"`, `"\`, `"abc\`, `{}`, `[]`, `{"a":[1,{"b":"}"}]}`,
		`{"a":1`, `}{`, `]`, `"{"`, `{"t":"x"}`, `{"a":"\\\\"}`, `["\"]"]`, `["\\"]"]`,
	}
	for _, s := range fixed {
		require.Equal(t, balancedReference([]byte(s)), balanced([]byte(s)), "%q", s)
	}
	const alphabet = `"\{}[]a:,`
	rng := rand.New(rand.NewPCG(9, 10))
	for range 300000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		require.Equal(t, balancedReference(b), balanced(b), "%q", b)
	}
}

// parseCompact may only accept a line that parseFraming reads the same way:
// the same key, body and timestamp, at the same places in the line.
func TestParseCompactAgreesWithParseFraming(t *testing.T) {
	ts := "2026-01-02T03:04:05.000006+00:00"
	valid := []string{
		`{"key":1,"result":2,"timestamp":"` + ts + `"}`,
		`{"key":"a","result":{"x":[1,2]},"timestamp":"` + ts + `"}`,
		`{"key":-5,"result":"s\"q","timestamp":"` + ts + `"}`,
		`{"key":[1,"x"],"result":null,"timestamp":"` + ts + `"}`,
		`{"key":1,"result": 2 ,"timestamp":"` + ts + `"}`,
		`{"key":1,"result":{"timestamp":"` + ts + `"},"timestamp":"` + ts + `"}`,
		`{"key":1,"error":"e","attempt":1,"timestamp":"` + ts + `"}`,
		`{"key": 1, "result": 2, "timestamp": "2026-01-02T03:04:05.000006"}`,
	}
	check := func(b []byte) {
		got, ok := parseCompact(b)
		if !ok {
			return
		}
		want, wok := parseFraming(b)
		require.True(t, wok, "parseCompact accepted %q, parseFraming did not", b)
		same := func(x, y []byte) bool {
			return len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
		}
		require.True(t, same(want.key, got.key) && same(want.body, got.body) && same(want.ts, got.ts),
			"%q: compact %q %q %q, framing %q %q %q", b, got.key, got.body, got.ts, want.key, want.body, want.ts)
	}
	accepted := 0
	for _, v := range valid {
		if _, ok := parseCompact([]byte(v)); ok {
			accepted++
		}
		check([]byte(v))
	}
	require.GreaterOrEqual(t, accepted, 5, "the compact shapes are taken")
	// Mutations of valid lines: bytes changed, cut, inserted, and lines
	// glued together.
	const alphabet = `"\{}[],: a1`
	rng := rand.New(rand.NewPCG(13, 14))
	for range 300000 {
		b := []byte(valid[rng.IntN(len(valid))])
		switch rng.IntN(4) {
		case 0:
			for range 1 + rng.IntN(3) {
				b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
			}
		case 1:
			if cut := rng.IntN(len(b)); rng.IntN(2) == 0 {
				b = b[cut:]
			} else {
				b = b[:cut]
			}
		case 2:
			i := rng.IntN(len(b))
			b = append(b[:i:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
		case 3:
			b = append(b[:rng.IntN(len(b)):len(b)], valid[rng.IntN(len(valid))]...)
		}
		check(b)
	}
}

// TestDuplicateKeyLastWins: a line with two "key" fields means the last
// one, as encoding/json and Python's json.loads read it, on every path of
// the parser and through Open.
func TestDuplicateKeyLastWins(t *testing.T) {
	ts := `"2026-11-23T13:47:51.518145+00:00"`
	tests := []struct {
		name, line, key string
	}{
		{"compact result line", `{"key":1,"result":2,"key":7,"timestamp":` + ts + `}`, `7`},
		{"key right after key", `{"key":1,"key":7,"timestamp":` + ts + `}`, `7`},
		{"Python spacing", `{"key": "1", "result": [1], "key": "7", "timestamp": ` + ts + `}`, `"7"`},
		{"errors line", `{"key":1,"error":"e","attempt":2,"key":7,"timestamp":` + ts + `}`, `7`},
		{"escaped field name", `{"key":1,"result":2,"k\u0065y":7,"timestamp":` + ts + `}`, `7`},
		{"nested key is not the key", `{"key":1,"result":{"key":3},"timestamp":` + ts + `}`, `1`},
		{"other case is another field", `{"key":1,"result":2,"KEY":7,"timestamp":` + ts + `}`, `1`},
		{"string with a colon", `{"key":1,"result":"key:x","timestamp":` + ts + `}`, `1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, ok := parseRecord([]byte(tt.line))
			require.True(t, ok)
			assert.Equal(t, tt.key, string(rec.key))
			assert.True(t, rec.whole)
		})
	}
	t.Run("Open", func(t *testing.T) {
		dir := t.TempDir()
		line := `{"key": 1, "result": 2, "key": 7, "timestamp": ` + ts + "}\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "dup_results.jsonl"), []byte(line), 0o644))
		r, err := Open[int, int]("dup", WithDir(dir), WithLogger(quietLog))
		require.NoError(t, err)
		defer r.Close()
		assert.True(t, r.IsCompleted(7))
		assert.False(t, r.IsCompleted(1))
	})
}
