package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The line format, shared with the Python library:
//
//	{"key": <key>, "result": <any JSON>, "timestamp": "<ISO 8601>"}
//	{"key": <key>, "error": "<message>", "timestamp": "<ISO 8601>"}
//
// We write it compact, with the timestamp last; errors lines carry an extra
// "attempt" field before it. We read both our compact form and Python's
// json.dumps form (", " and ": " separators) on a fast path that looks only at
// the key and the framing, and anything else that is valid JSON on a slow path.

// tsLayout has a fixed width and a zone offset; Python's
// datetime.fromisoformat reads it.
const tsLayout = "2006-01-02T15:04:05.000000-07:00"

// appendTimestamp appends t in tsLayout. It writes the digits itself: every
// save stamps a line, and time.Time.AppendFormat, which interprets the
// layout on each call, was a tenth of SaveResult's time in profiles. The
// output is the same byte for byte, fractions truncated as Go does.
func appendTimestamp(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, tsLayout)
	}
	hour, minute, sec := t.Clock()
	_, offset := t.Zone()
	sign := byte('+')
	zone := offset / 60 // the layout shows hours and minutes only
	if zone < 0 {
		sign, zone = '-', -zone
	}
	micro := t.Nanosecond() / 1000
	var b [len(tsLayout)]byte
	put4(b[0:], year)
	b[4] = '-'
	put2(b[5:], int(month))
	b[7] = '-'
	put2(b[8:], day)
	b[10] = 'T'
	put2(b[11:], hour)
	b[13] = ':'
	put2(b[14:], minute)
	b[16] = ':'
	put2(b[17:], sec)
	b[19] = '.'
	put2(b[20:], micro/10000)
	put4(b[22:], micro%10000)
	b[26] = sign
	put2(b[27:], zone/60)
	b[29] = ':'
	put2(b[30:], zone%60)
	return append(dst, b[:]...)
}

func put2(b []byte, v int) {
	b[0] = byte('0' + v/10%10)
	b[1] = byte('0' + v%10)
}

func put4(b []byte, v int) {
	put2(b, v/100)
	put2(b[2:], v%100)
}

// parseTimestamp reads our timestamps and Python's naive local ones
// (microseconds omitted when zero).
func parseTimestamp(b []byte) (time.Time, bool) {
	s := string(b)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.Local); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// Every line opens with lineHead and the key, and closes with
// appendLineTail: the timestamp last, at a fixed distance from the end, so
// that stampInOrder can rewrite it in place.
const (
	lineHead   = `{"key":`
	resultMid  = `,"result":`
	lineTSOpen = `,"timestamp":"`
	lineEnd    = "\"}\n"
)

func appendLineTail(dst []byte, ts time.Time) []byte {
	dst = append(dst, lineTSOpen...)
	dst = appendTimestamp(dst, ts)
	return append(dst, lineEnd...)
}

// timestampAt is where the timestamp of a line ending in appendLineTail
// starts.
func timestampAt(line []byte) int {
	return len(line) - len(lineEnd) - len(tsLayout)
}

// appendResultLine builds a results line from the result's JSON. SaveResult
// builds the same line with the result encoded in place.
func appendResultLine(dst, key, result []byte, ts time.Time) []byte {
	dst = append(dst, lineHead...)
	dst = append(dst, key...)
	dst = append(dst, resultMid...)
	dst = append(dst, result...)
	return appendLineTail(dst, ts)
}

func appendErrorLine(dst, key []byte, msg string, attempt int, ts time.Time) []byte {
	dst = append(dst, lineHead...)
	dst = append(dst, key...)
	dst = append(dst, `,"error":`...)
	dst = appendJSONString(dst, msg)
	dst = append(dst, `,"attempt":`...)
	dst = strconv.AppendInt(dst, int64(attempt), 10)
	return appendLineTail(dst, ts)
}

// lineBuilder builds results lines: a buffer and a JSON encoder writing into
// it, reused through a pool.
type lineBuilder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// maxPooledLine is the largest buffer kept for reuse.
const maxPooledLine = 64 << 10

// record is one parsed line. Its slices point into the line.
type record struct {
	key  []byte // the key's raw JSON
	body []byte // the raw JSON after the key: the result, or the error message
	ts   []byte // the timestamp's text, without quotes; empty if absent
	// whole is false when body's brackets and strings do not close: a line
	// cut short that still looks framed (see journal.load).
	whole bool
}

// parseRecord splits a line (without its newline) into its parts. ok is false
// when the line is not a record: garbage, or a line cut short.
//
// Whatever path reads it, a line that is valid JSON gives the record
// encoding/json would (and Python's json.loads): in particular the last
// "key" field wins when there are several, so the fast paths hand such
// lines to the slow one (FuzzParseAgreesWithJSON holds them to it).
func parseRecord(line []byte) (rec record, ok bool) {
	// Our own lines first (parseCompact's shape, spelled out). The record is
	// built once, here, from compactParts' offsets: a record is too large
	// for registers, and each copy of one made in memory just after its
	// fields were stored one by one (as returning it from parseCompact did)
	// stalled the load on the stores, ~5 ns each in Open's profile.
	keyEnd, bodyStart, bodyEnd, ok := compactParts(line)
	if !ok {
		return parseRecordOther(line)
	}
	// One pass over the body checks that it is whole and that no field at
	// its top level is another "key".
	whole, keyField := scanBody(line[bodyStart:bodyEnd])
	if keyField {
		return parseRecordSlow(line)
	}
	n := len(line)
	return record{key: line[len(lineHead):keyEnd], body: line[bodyStart:bodyEnd],
		ts: line[n-len(`"}`)-len(tsLayout) : n-len(`"}`)], whole: whole}, true
}

// parseRecordOther is parseRecord for the lines that parseCompact does not
// read.
func parseRecordOther(line []byte) (rec record, ok bool) {
	if rec, ok = parseFraming(line); !ok {
		return parseRecordSlow(line)
	}
	var keyField bool
	rec.whole, keyField = scanBody(rec.body)
	if keyField {
		return parseRecordSlow(line)
	}
	return rec, true
}

// parseFraming checks a line's framing for any spacing and field name: it walks
// the key from the front and the timestamp field from the back.
func parseFraming(b []byte) (rec record, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return rec, false
	}
	i = skipSpace(b, i+1)
	if !bytes.HasPrefix(b[i:], []byte(`"key"`)) {
		return rec, false
	}
	i = skipSpace(b, i+len(`"key"`))
	if i >= len(b) || b[i] != ':' {
		return rec, false
	}
	i = skipSpace(b, i+1)
	end, ok := skipValue(b, i)
	if !ok {
		return rec, false
	}
	rec.key = b[i:end]
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ',' {
		return rec, false
	}
	i = skipSpace(b, i+1)
	if end, ok = skipString(b, i); !ok {
		return rec, false
	}
	if name := b[i:end]; string(name) == `"key"` || bytes.IndexByte(name, '\\') >= 0 {
		return rec, false // maybe a second key, which would win: see parseRecord
	}
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return rec, false
	}
	bodyStart := skipSpace(b, i+1)

	// From the end: `, "timestamp": "<ts>" }`.
	j := skipSpaceBack(b, len(b))
	if j == 0 || b[j-1] != '}' {
		return rec, false
	}
	j = skipSpaceBack(b, j-1)
	if j == 0 || b[j-1] != '"' {
		return rec, false
	}
	tsEnd := j - 1
	q := lastQuote(b, tsEnd)
	if q < 0 || bytes.IndexByte(b[q+1:tsEnd], '\\') >= 0 {
		return rec, false
	}
	rec.ts = b[q+1 : tsEnd]
	j = skipSpaceBack(b, q)
	if j == 0 || b[j-1] != ':' {
		return rec, false
	}
	j = skipSpaceBack(b, j-1)
	if !bytes.HasSuffix(b[:j], []byte(`"timestamp"`)) {
		return rec, false
	}
	j = skipSpaceBack(b, j-len(`"timestamp"`))
	if j == 0 || b[j-1] != ',' {
		return rec, false
	}
	bodyEnd := skipSpaceBack(b, j-1)
	if bodyEnd <= bodyStart {
		return rec, false
	}
	rec.body = b[bodyStart:bodyEnd]
	return rec, true
}

// parseCompact reads the results lines this library writes,
// {"key":K,"result":R,"timestamp":"<tsLayout>"} without spaces, checking the
// fixed parts in place instead of walking them: ~18 ns a line against ~55
// for parseFraming, which was a quarter of a line's time in Open's profile.
// It accepts a line only if parseFraming reads the same record from it (a
// differential test holds it to that); for any other shape (errors lines,
// Python's spacing and timestamps) ok is false and parseFraming reads it.
func parseCompact(b []byte) (rec record, ok bool) {
	keyEnd, bodyStart, bodyEnd, ok := compactParts(b)
	if !ok {
		return rec, false
	}
	n := len(b)
	return record{key: b[len(lineHead):keyEnd], body: b[bodyStart:bodyEnd],
		ts: b[n-len(`"}`)-len(tsLayout) : n-len(`"}`)]}, true
}

// compactParts is parseCompact returning where the parts end and start:
// the key is b[len(lineHead):keyEnd], the body b[bodyStart:bodyEnd] and the
// timestamp the len(tsLayout) bytes before the closing `"}`.
func compactParts(b []byte) (keyEnd, bodyStart, bodyEnd int, ok bool) {
	const (
		head    = lineHead
		field   = resultMid
		tsField = lineTSOpen
	)
	n := len(b)
	tsStart := n - len(`"}`) - len(tsLayout)
	fieldEnd := tsStart - len(tsField) // the key ends here at the latest
	if fieldEnd < len(head) || string(b[:len(head)]) != head || b[n-1] != '}' || b[n-2] != '"' ||
		string(b[tsStart-len(tsField):tsStart]) != tsField {
		return 0, 0, 0, false
	}
	if quoteOrBackslash(b[tsStart : n-2]) {
		return 0, 0, 0, false
	}
	end, ok := skipValue(b, len(head))
	if !ok || end+len(field) > fieldEnd || string(b[end:end+len(field)]) != field {
		return 0, 0, 0, false
	}
	bodyStart = skipSpace(b, end+len(field))
	bodyEnd = skipSpaceBack(b, fieldEnd)
	if bodyEnd <= bodyStart {
		return 0, 0, 0, false
	}
	return end, bodyStart, bodyEnd, true
}

// quoteOrBackslash reports whether ts holds a quote or a backslash. It
// reads a timestamp of tsLayout's 32 bytes 8 at a time, where two
// bytes.IndexByte calls cost ~10 ns a line in Open's profile.
func quoteOrBackslash(ts []byte) bool {
	var found uint64
	for ; len(ts) >= 8; ts = ts[8:] {
		w := binary.LittleEndian.Uint64(ts)
		q, bs := w^swarOnes*'"', w^swarOnes*'\\'
		// A byte of q or bs is zero where w holds the byte: the
		// has-zero-byte test, exact as to whether there is one.
		found |= (q-swarOnes)&^q | (bs-swarOnes)&^bs
	}
	if found&swarHigh != 0 {
		return true
	}
	return len(ts) > 0 && (bytes.IndexByte(ts, '"') >= 0 || bytes.IndexByte(ts, '\\') >= 0)
}

// lastQuote is bytes.LastIndexByte(b[:end], '"') for a line that ends in a
// timestamp: it tries the widths of ours and of Python's first, checking
// them with IndexByte, which is vectorised where LastIndexByte walks back
// byte by byte.
func lastQuote(b []byte, end int) int {
	for _, w := range [...]int{len(tsLayout), len("2006-01-02T15:04:05.000000"), len("2006-01-02T15:04:05")} {
		if q := end - w - 1; q >= 0 && b[q] == '"' && bytes.IndexByte(b[q+1:end], '"') < 0 {
			return q
		}
	}
	return bytes.LastIndexByte(b[:end], '"')
}

// parseRecordSlow accepts any JSON object with a "key" field, in any order.
// Field names match exactly and the last of a name wins, as in Python's
// json.loads (encoding/json's struct decoding would also match "KEY").
func parseRecordSlow(line []byte) (rec record, ok bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil || m["key"] == nil {
		return rec, false
	}
	rec.key = m["key"]
	rec.body = m["result"]
	if e, ok := m["error"]; ok {
		rec.body = e
	}
	if raw, ok := m["timestamp"]; ok {
		var ts string
		if json.Unmarshal(raw, &ts) != nil {
			return rec, false // not a string: not a record
		}
		rec.ts = []byte(ts)
	}
	rec.whole = true // json.Unmarshal checked the whole line
	return rec, true
}

// errorFields decodes the parts of an errors line that only AllErrors needs.
func errorFields(line []byte) (msg string, ts time.Time) {
	var v struct {
		Error     json.RawMessage `json:"error"`
		Timestamp string          `json:"timestamp"`
	}
	if json.Unmarshal(line, &v) != nil {
		return "", time.Time{}
	}
	if json.Unmarshal(v.Error, &msg) != nil {
		// Not a string: show the JSON as written.
		msg = string(v.Error)
	}
	ts, _ = parseTimestamp([]byte(v.Timestamp))
	return msg, ts
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipSpaceBack returns the end of b[:j] without trailing white space.
func skipSpaceBack(b []byte, j int) int {
	for j > 0 && (b[j-1] == ' ' || b[j-1] == '\t' || b[j-1] == '\r' || b[j-1] == '\n') {
		j--
	}
	return j
}

// skipString returns the index just past the JSON string that starts at i.
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	// Most strings here (keys, field names) have no escapes: find the
	// closing quote with IndexByte, and walk only if a backslash precedes it.
	if q := bytes.IndexByte(b[i+1:], '"'); q >= 0 && bytes.IndexByte(b[i+1:i+1+q], '\\') < 0 {
		return i + 1 + q + 1, true
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

// skipValue returns the index just past the JSON value that starts at i. It
// checks the nesting of brackets and strings, not the whole grammar; keys are
// decoded fully afterwards.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, ok := skipString(b, i)
				if !ok {
					return end, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return i, false
	}
	start := i
	for i < len(b) && !scalarEnd[b[i]] {
		i++
	}
	return i, i > start
}

// scalarEnd marks the bytes that end a number or a literal in skipValue.
var scalarEnd = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as in encoding/json; callers that need an exact round trip check first.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
