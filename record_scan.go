package checkpoint

import (
	"bytes"
	"math/bits"
)

// scanBody reports whether b's brackets and strings close (as balanced
// does), and whether a string at its top level is followed by a colon and
// reads "key" or holds an escape (which might spell "key"): a field that
// encoding/json would take as the line's key, after the one the fast paths
// read. scanBodyBytes defines both answers, one byte at a time.
//
// Open runs it on every line, where scanBodyBytes was the largest single
// function in the profile (~90 ns of a 100-byte result), most of it
// mispredicted branches at the quotes and brackets, which come every few
// bytes at places that differ from line to line. Where the CPU compares 16
// or 32 bytes in one instruction (classifyVector: amd64), scanBlocks reads
// 64 bytes at a time instead, as bit masks of the quotes, backslashes and
// brackets (classify64), and finds the strings with bit arithmetic and no
// branch on the data: ~2.5 times faster on such results. Elsewhere, and for
// short bodies, scanBodyBytes reads them.
func scanBody(b []byte) (whole, keyField bool) {
	if !classifyVector || len(b) < scanBlockMin {
		return scanBodyBytes(b)
	}
	return scanBlocks(b)
}

// scanBlockMin is the shortest body scanBody reads in blocks: below it,
// copying the body into a block costs more than scanBodyBytes.
const scanBlockMin = 16

// scanBlocks is scanBody 64 bytes at a time. The bytes inside strings are
// the running XOR of the quotes that are not escaped; brackets outside
// strings change the depth by their count. Only where the depth may reach
// zero (in a result, the block with its last byte) does it walk the
// brackets one by one, to find where the depth is exactly zero (there a
// string followed by a colon is a "key" field) or below.
//
// Its answers are scanBodyBytes' on every input (FuzzScanBody holds it to
// the byte-at-a-time implementation it replaced). Escapes make the one
// difference in the rules: scanBodyBytes reads a backslash outside strings
// as a plain byte, where the masks take every backslash for an escape, so a
// body with a backslash outside strings (not JSON) is handed to
// scanBodyBytes whole. Until the first such backslash the two agree, so the
// test for one is exact: a backslash where the masks say no string is open.
func scanBlocks(b []byte) (whole, keyField bool) {
	var (
		depth int
		neg   bool   // depth went below zero
		inStr uint64 // all ones when the next block starts inside a string, else zero
		esc   uint64 // 1 when the next block's first byte is escaped
	)
	for i := 0; i < len(b); i += 64 {
		var quote, bslash, open, shut uint64
		switch {
		case i+64 <= len(b):
			quote, bslash, open, shut = classify64((*[64]byte)(b[i : i+64]))
		case len(b) >= 64:
			// The last 1..63 bytes: the block that ends with b, shifted so
			// that the bits of the bytes already scanned fall off. Zero bits
			// come in above: no quote, no bracket.
			quote, bslash, open, shut = classify64((*[64]byte)(b[len(b)-64:]))
			s := uint(i + 64 - len(b))
			quote, bslash, open, shut = quote>>s, bslash>>s, open>>s, shut>>s
		default:
			// A body shorter than a block, copied out: never read past b.
			var tail [64]byte
			copy(tail[:], b)
			quote, bslash, open, shut = classify64(&tail)
		}
		if bslash|esc != 0 {
			var escaped uint64
			escaped, esc = escapedBytes(bslash, esc)
			quote &^= escaped
		}
		// in: 1 for the bytes inside a string, its opening quote included
		// and its closing quote not.
		in := prefixXOR(quote) ^ inStr
		if bslash&^in != 0 {
			return scanBodyBytes(b) // a backslash outside strings: see above
		}
		inStr = uint64(int64(in) >> 63)
		open &^= in
		shut &^= in
		nShut := bits.OnesCount64(shut)
		if depth-nShut >= 1 {
			// The depth stays at 1 or more throughout the block.
			depth += bits.OnesCount64(open) - nShut
			continue
		}
		// Walk the brackets in order, marking the bytes at depth zero.
		var zero uint64
		from := uint64(0) // bits of the bytes before the bracket looked at
		for br := open | shut; br != 0; br &= br - 1 {
			at := br & -br
			if depth == 0 {
				zero |= (at - 1) &^ from
			}
			if open&at != 0 {
				depth++
			} else {
				depth--
				neg = neg || depth < 0
			}
			from = at<<1 - 1
		}
		if depth == 0 {
			zero |= ^from
		}
		// The strings that end at depth zero.
		for ends := quote &^ in & zero; ends != 0 && !keyField; ends &= ends - 1 {
			keyField = keyFieldAt(b, i+bits.TrailingZeros64(ends))
		}
	}
	return inStr == 0 && !neg && depth == 0, keyField
}

// prefixXOR returns, in each bit of m, the XOR of that bit and all bits below
// it.
func prefixXOR(m uint64) uint64 {
	m ^= m << 1
	m ^= m << 2
	m ^= m << 4
	m ^= m << 8
	m ^= m << 16
	m ^= m << 32
	return m
}

// escapedBytes returns the bytes of a block that a backslash escapes, given
// its backslashes, and whether the first byte is escaped (first is 0 or 1),
// and whether the first byte of the next block is (0 or 1). A backslash that
// is escaped escapes nothing. Escapes are rare in results: a loop over them
// is simplest.
func escapedBytes(bslash, first uint64) (escaped, next uint64) {
	escaped = first
	for m := bslash &^ escaped; m != 0; {
		at := m & -m
		escaped |= at << 1
		next |= at >> 63
		m &^= at | at<<1
	}
	return escaped, next
}

// keyFieldAt reports whether the string that ends with the quote at b[q], at
// the top level, is followed by a colon and reads "key" or holds an escape.
// Without escapes a string holds no quote, so one that ends in `"key"` is
// "key". The quote before b[q] is the string's opening quote or an escaped
// one, after a backslash: an opening quote never follows one, since
// scanBody reads no body with a backslash outside strings.
func keyFieldAt(b []byte, q int) bool {
	if j := skipSpace(b, q+1); j >= len(b) || b[j] != ':' {
		return false
	}
	if q >= 4 && string(b[q-4:q+1]) == `"key"` {
		return true
	}
	open := bytes.LastIndexByte(b[:q], '"')
	return open > 0 && b[open-1] == '\\' || bytes.IndexByte(b[open+1:q], '\\') >= 0
}

// depthDelta and stringEnd are scanBodyBytes' tables: a bracket's change to
// the depth, and the bytes that end a run inside a string.
var (
	depthDelta = [256]int8{'{': 1, '[': 1, '}': -1, ']': -1}
	stringEnd  = [256]bool{'"': true, '\\': true}
)

// scanBodyBytes is scanBody one byte at a time: the definition of its
// answers, and its path for short bodies and bodies that are not JSON.
func scanBodyBytes(b []byte) (whole, keyField bool) {
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
