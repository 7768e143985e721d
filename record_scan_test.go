package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// balanced is scanBody's first answer: whether b, the body of a parsed
// record, closes every string, object and array it opens. A line cut short
// right after a nested object whose last field is "timestamp" looks framed;
// its body, a strict prefix of a JSON value, is never balanced.
func balanced(b []byte) bool {
	whole, _ := scanBody(b)
	return whole
}

// scanBodyCases are bodies at the edges of scanBody's words: escapes,
// quotes and brackets at each of the 8 places in a word and across words,
// depth reaching zero inside a word, top-level keys, strings cut short.
var scanBodyCases = []struct {
	body            string
	whole, keyField bool
}{
	{``, true, false},
	{`1`, true, false},
	{`12345678`, true, false},
	{`123456789`, true, false},
	{`"a"`, true, false},
	{`"abcdefgh"`, true, false},
	{`"abcdefghijklmnop"`, true, false},
	{`"abcdefghijklmnopq`, false, false},
	{`"abcdef\`, false, false},
	{`"abcdef\"`, false, false},
	{`"abcdef\""`, true, false},
	{`"abcdefg\""`, true, false},
	{`"abcdefg\\"`, true, false},
	{`"abcdefg\\\"`, false, false},
	{`"abcdefg\\\""`, true, false},
	{`"abcdefghijklmn\\"`, true, false},
	{`"abcdefghijklmn\"`, false, false},
	{`{"id":123,"name":"item-123","score":17.571428571428573,"tags":["alpha","beta"],"passed":true}`, true, false},
	{`{"id": 123, "name": "item-123", "tags": ["alpha", "beta"]}`, true, false},
	{`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":[[[[[[[[[1]]]]]]]]]}}}}}}}}}`, true, false},
	{`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":[[[[[[[[[1]]]]]]]]}}}}}}}}}`, false, false},
	{`{"a":"}}}}}}}}]]]]]]]]"}`, true, false},
	{`{"a":"{{{{{{{{[[[[[[[["}`, true, false},
	{`[{},{},{},{},{},{},{},{}]`, true, false},
	{`[{},{},{},{}]]`, false, false},
	{`]]]]]]]]]]`, false, false},
	{`}{`, false, false},
	{`1234567}{`, false, false},
	{`"héllo wörld, ünïcödé → ✓ 🎉"`, true, false},
	{`{"k":"\u00e9\u2028\ud83c\udf89"}`, true, false},
	{`"x","key":1`, true, true},
	{`"x", "key" : 1`, true, true},
	{`"x","ke\u0079":1`, true, true},
	{`"x","kex":1`, true, false},
	{`"x","key"`, true, false},
	{`"x","key" `, true, false},
	{`1234567,"key":1`, true, true},
	{`12345678,"key":1`, true, true},
	{`123456789,"key":1`, true, true},
	{`{"a":1},"key":2`, true, true},
	{`{"abcdefgh":1},"key":2`, true, true},
	{`{"key":1}`, true, false},
	{`[1],"a\"b":2`, true, true},
	{`[1],"abcdefgh\\":2`, true, true},
	{`[1],"abcdefghij":2`, true, false},
	{`[]]["key":1`, false, true},
	{`],"key":1`, false, false},
	{`"key":1,"abcdefghij`, false, true},
	{`"abcdefghijkl\"key":1`, true, true},
	{`"abcdefghijkl","key\"`, false, false},
	{`"\\","key":1`, true, true},
	{`"` + strings.Repeat("long string ", 20) + `"`, true, false},
	{`"` + strings.Repeat("long string ", 20) + `":1`, true, false},
	{`"` + strings.Repeat("long \\n string ", 20) + `":1`, true, true},
	{`\"key":1`, true, true},
	{`\\"a"`, true, false},
	{"\"a\x00b\"", true, false},
}

func TestScanBody(t *testing.T) {
	for _, c := range scanBodyCases {
		whole, keyField := scanBody([]byte(c.body))
		if whole != c.whole || keyField != c.keyField {
			t.Errorf("scanBody(%q) = %v, %v; want %v, %v", c.body, whole, keyField, c.whole, c.keyField)
		}
		// The expectations above are the reference's.
		if w, k := scanBodyBytes([]byte(c.body)); w != c.whole || k != c.keyField {
			t.Errorf("scanBodyBytes(%q) = %v, %v; want %v, %v", c.body, w, k, c.whole, c.keyField)
		}
	}
}

// TestScanBodyMatchesReference tries many short bodies made of the bytes
// scanBody cares about, at every alignment of a word.
func TestScanBodyMatchesReference(t *testing.T) {
	const alphabet = "\"\\{}[]a: ,k\"ey"
	rng := rand.New(rand.NewPCG(14, 8))
	for range 300000 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		checkScanBody(t, b)
	}
}

// checkScanBody checks scanBody, and scanBlocks (which scanBody skips on
// short bodies, and on CPUs without vector compares), against the
// reference.
func checkScanBody(t *testing.T, b []byte) {
	t.Helper()
	rw, rk := scanBodyBytes(b)
	for _, f := range []struct {
		name string
		fn   func([]byte) (bool, bool)
	}{{"scanBody", scanBody}, {"scanBlocks", scanBlocks}} {
		if w, k := f.fn(b); w != rw || k != rk {
			t.Fatalf("%s(%q) = %v, %v; the reference says %v, %v", f.name, b, w, k, rw, rk)
		}
	}
}

// randomJSON appends a random JSON value of at most depth levels: long and
// short strings with escapes and unicode, numbers, literals, nesting.
func randomJSON(rng *rand.Rand, dst []byte, depth int) []byte {
	switch k := rng.IntN(10); {
	case depth > 0 && k < 3:
		dst = append(dst, '{')
		for i := range rng.IntN(5) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = randomString(rng, dst)
			dst = append(dst, ':')
			dst = randomJSON(rng, dst, depth-1)
		}
		return append(dst, '}')
	case depth > 0 && k < 5:
		dst = append(dst, '[')
		for i := range rng.IntN(5) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = randomJSON(rng, dst, depth-1)
		}
		return append(dst, ']')
	case k < 8:
		return randomString(rng, dst)
	case k < 9:
		return append(dst, []string{"true", "false", "null"}[rng.IntN(3)]...)
	default:
		return append(dst, []string{"0", "-12", "17.571428571428573", "1e-7"}[rng.IntN(4)]...)
	}
}

func randomString(rng *rand.Rand, dst []byte) []byte {
	parts := []string{"a", "key", "item-", "0123456789", "é", "→", "🎉", ` `, `\"`, `\\`, `\n`, `\u00e9`, `\/`, "{", "}", "[", "]", ":", ","}
	dst = append(dst, '"')
	n := rng.IntN(8)
	if rng.IntN(10) == 0 {
		n = 100 // longer than a block
	}
	for range n {
		dst = append(dst, parts[rng.IntN(len(parts))]...)
	}
	return append(dst, '"')
}

// TestScanBodyMatchesReferenceOnJSON tries random JSON values, whole, cut
// short, with a byte changed, and followed by more fields (as the bodies of
// errors lines are, or of lines with a second "key").
func TestScanBodyMatchesReferenceOnJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 9))
	const noise = "\"{}[]:, \\k"
	for range 20000 {
		b := randomJSON(rng, nil, 4)
		checkScanBody(t, b)
		if !json.Valid(b) {
			t.Fatalf("randomJSON made %q", b)
		}
		if w, _ := scanBody(b); !w {
			t.Fatalf("valid JSON %q is not whole", b)
		}
		for _, extra := range []string{`,"key":1`, `, "attempt" : 3`, `,"k\u0065y":1`, `,"ke":1`} {
			checkScanBody(t, append(bytes.Clone(b), extra...))
		}
		if len(b) > 0 {
			checkScanBody(t, b[:rng.IntN(len(b))])
			c := bytes.Clone(b)
			c[rng.IntN(len(c))] = noise[rng.IntN(len(noise))]
			checkScanBody(t, c)
		}
	}
}

// TestClassify64 holds classify64 (vector compares on amd64) to
// classify64Generic, on random blocks of the bytes they look for and of
// their neighbours ('[' is '{' less 0x20, 'Y' is ']' less 4).
func TestClassify64(t *testing.T) {
	const alphabet = "\"\\{}[]:,aYy_\x00\x80\xff\x5b\x7b\x3b\x1b\x02"
	rng := rand.New(rand.NewPCG(64, 1))
	var p [64]byte
	for range 100000 {
		for i := range p {
			p[i] = alphabet[rng.IntN(len(alphabet))]
		}
		checkClassify64(t, &p)
	}
	for c := range 256 {
		for i := range p {
			p[i] = byte(c)
		}
		checkClassify64(t, &p)
	}
}

func checkClassify64(t *testing.T, p *[64]byte) {
	t.Helper()
	var want [4]uint64
	for i, c := range p {
		for k, class := range []string{`"`, `\`, "{[", "}]"} {
			if strings.IndexByte(class, c) >= 0 {
				want[k] |= 1 << i
			}
		}
	}
	for _, f := range classify64Impls() {
		q, bs, o, s := f.fn(p)
		if got := [4]uint64{q, bs, o, s}; got != want {
			t.Fatalf("%s(%q) = %x, want %x", f.name, p, got, want)
		}
	}
}

// FuzzScanBody: scanBody agrees with the byte-at-a-time reference on every
// input, at every offset in a word, and a valid JSON value is whole.
func FuzzScanBody(f *testing.F) {
	for _, c := range scanBodyCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for off := range 8 {
			if off > len(b) {
				break
			}
			checkScanBody(t, b[off:])
			checkScanBody(t, b[:len(b)-off])
		}
		if json.Valid(b) {
			if whole, _ := scanBody(b); !whole {
				t.Fatalf("valid JSON %q is not whole", b)
			}
		}
	})
}

func BenchmarkScanBody(b *testing.B) {
	line := benchLine(b, []byte("1234567"))
	rec, ok := parseRecord(line[:len(line)-1])
	if !ok {
		b.Fatal("not a record")
	}
	bodies := []struct{ name, body string }{
		{"result", string(rec.body)},
		{"python", `{"id": 1234567, "name": "item-1234567", "score": 3.5, "tags": ["alpha", "beta"], "passed": true}`},
		{"error", `"` + strings.Repeat("connection reset by peer; ", 6) + `"`},
		{"escapes", `{"text":"line one\nline \"two\"\tend","path":"C:\\dir\\file","u":"caf\u00e9"}`},
		{"nested", `{"a":[{"b":1,"c":[1,2,3]},{"b":2,"c":[]}],"d":{"e":{"f":null}}}`},
	}
	for _, c := range bodies {
		body := []byte(c.body)
		for _, v := range []struct {
			name string
			fn   func([]byte) (bool, bool)
		}{{"words", scanBody}, {"reference", scanBodyBytes}} {
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if whole, key := v.fn(body); !whole || key {
						b.Fatal("not a whole body")
					}
				}
			})
		}
	}
}

// parseRecordReference is parseRecord as it was before it built the record
// from compactParts' offsets and before scanBody read blocks: the
// benchmarks' reference, and the differential test's.
func parseRecordReference(line []byte) (rec record, ok bool) {
	if rec, ok = parseCompactReference(line); !ok {
		if rec, ok = parseFraming(line); !ok {
			return parseRecordSlow(line)
		}
	}
	var keyField bool
	rec.whole, keyField = scanBodyBytes(rec.body)
	if keyField {
		return parseRecordSlow(line)
	}
	return rec, true
}

func parseCompactReference(b []byte) (rec record, ok bool) {
	const (
		head    = lineHead
		field   = resultMid
		tsField = lineTSOpen
	)
	n := len(b)
	tsStart := n - len(`"}`) - len(tsLayout)
	keyEnd := tsStart - len(tsField) // at the least
	if keyEnd < len(head) || string(b[:len(head)]) != head || b[n-1] != '}' || b[n-2] != '"' ||
		string(b[tsStart-len(tsField):tsStart]) != tsField {
		return rec, false
	}
	ts := b[tsStart : n-2]
	if bytes.IndexByte(ts, '"') >= 0 || bytes.IndexByte(ts, '\\') >= 0 {
		return rec, false
	}
	end, ok := skipValue(b, len(head))
	if !ok || end+len(field) > keyEnd || string(b[end:end+len(field)]) != field {
		return rec, false
	}
	bodyStart := skipSpace(b, end+len(field))
	bodyEnd := skipSpaceBack(b, tsStart-len(tsField))
	if bodyEnd <= bodyStart {
		return rec, false
	}
	return record{key: b[len(head):end], body: b[bodyStart:bodyEnd], ts: ts}, true
}

// TestParseRecordMatchesReference: lines of random results and keys,
// written as the library writes them and then cut, changed or with a byte
// put in the timestamp, parse as they did before.
func TestParseRecordMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 10))
	ts := time.Date(2026, 11, 23, 13, 47, 51, 518145000, time.UTC)
	const noise = "\"{}[]:, \\k"
	for range 20000 {
		key := randomJSON(rng, nil, 1)
		line := appendResultLine(nil, key, randomJSON(rng, nil, 3), ts)
		line = line[:len(line)-1]
		lines := [][]byte{line, line[:rng.IntN(len(line))]}
		c := bytes.Clone(line)
		c[rng.IntN(len(c))] = noise[rng.IntN(len(noise))]
		lines = append(lines, c)
		c = bytes.Clone(line)
		c[timestampAt(line)+rng.IntN(len(tsLayout))] = noise[rng.IntN(len(noise))]
		lines = append(lines, c)
		for _, l := range lines {
			got, ok := parseRecord(l)
			want, wok := parseRecordReference(l)
			if ok != wok || ok && (!bytes.Equal(got.key, want.key) || !bytes.Equal(got.body, want.body) ||
				!bytes.Equal(got.ts, want.ts) || got.whole != want.whole) {
				t.Fatalf("parseRecord(%q) = %s, %v; the reference says %s, %v", l, showRecord(got), ok, showRecord(want), wok)
			}
		}
	}
}

func showRecord(r record) string {
	return fmt.Sprintf("{key %q body %q ts %q whole %v}", r.key, r.body, r.ts, r.whole)
}

// BenchmarkParseRecordVsReference parses 4096 different lines of the
// BenchmarkOpen shape, as Open does (the same line over and over lets the
// branch predictor learn it), with parseRecord and with the reference.
func BenchmarkParseRecordVsReference(b *testing.B) {
	var lines [][]byte
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 4096 {
		res, err := json.Marshal(newBenchRecord(int64(i) * 2441))
		if err != nil {
			b.Fatal(err)
		}
		key := strconv.AppendInt(nil, int64(i)*2441, 10)
		line := appendResultLine(nil, key, res, ts.Add(time.Duration(i)*time.Microsecond))
		lines = append(lines, line[:len(line)-1])
	}
	for _, v := range []struct {
		name string
		fn   func([]byte) (record, bool)
	}{{"new", parseRecord}, {"reference", parseRecordReference}} {
		b.Run(v.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if rec, ok := v.fn(lines[i%len(lines)]); !ok || !rec.whole {
					b.Fatal("not a record")
				}
				i++
			}
		})
	}
}
