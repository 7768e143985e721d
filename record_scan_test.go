package checkpoint

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// scanBodyReference is scanBody as it was before it read words: one byte at
// a time, finding each string's end with a table. scanBody must agree with
// it on every input.
func scanBodyReference(b []byte) (whole, keyField bool) {
	depth, low := 0, 0
	i := 0
	for {
		for ; i < len(b) && b[i] != '"'; i++ {
			depth += int(depthDelta[b[i]])
			low = min(low, depth)
		}
		if i == len(b) {
			return low >= 0 && depth == 0, keyField
		}
		start, escaped := i, false
		for i++; ; i++ {
			for i < len(b) && !stringEnd[b[i]] {
				i++
			}
			if i >= len(b) {
				return false, keyField
			}
			if b[i] == '"' {
				break
			}
			escaped = true
			i++
		}
		i++
		if depth == 0 {
			if j := skipSpace(b, i); j < len(b) && b[j] == ':' &&
				(escaped || string(b[start:i]) == `"key"`) {
				keyField = true
			}
		}
	}
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
		if w, k := scanBodyReference([]byte(c.body)); w != c.whole || k != c.keyField {
			t.Errorf("scanBodyReference(%q) = %v, %v; want %v, %v", c.body, w, k, c.whole, c.keyField)
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

func checkScanBody(t *testing.T, b []byte) {
	t.Helper()
	w, k := scanBody(b)
	rw, rk := scanBodyReference(b)
	if w != rw || k != rk {
		t.Fatalf("scanBody(%q) = %v, %v; the reference says %v, %v", b, w, k, rw, rk)
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
		}{{"words", scanBody}, {"reference", scanBodyReference}} {
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
