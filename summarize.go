package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
)

// FieldStats describes the numbers found at one field of a checkpoint's
// latest results.
type FieldStats struct {
	Field   string  `json:"field"`
	Count   int     `json:"count"`   // results with a number at Field
	Missing int     `json:"missing"` // results without one: absent, null, or not a number
	Mean    float64 `json:"mean"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	// Percentiles, interpolated between the two nearest values as
	// numpy.percentile does by default.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// Summarize computes the count, mean, minimum, maximum and percentiles of
// the number at field in the latest result of every completed key of the
// checkpoint ref. field is a path of object fields and array indexes
// separated by dots ("score", "usage.tokens", "scores.0"), which may start
// with a dot as in jq (".score"); "" and "." are the result itself. A path
// with an empty part fails with an error wrapping ErrBadField. Results
// without a number there are counted in Missing.
//
// It reads ref without its lock (a job may be running) and streams the
// results from disk: it holds the numbers (8 bytes each, for the exact
// percentiles) and an index of 16 bytes per key, not the results.
func Summarize(ctx context.Context, ref Ref, field string) (*FieldStats, error) {
	path, err := parseFieldPath(field)
	if err != nil {
		return nil, err
	}
	v, err := openLightView(ctx, ref, maphash.MakeSeed())
	if err != nil {
		return nil, err
	}
	defer v.close()
	values := make([]float64, 0, v.completed)
	s := &FieldStats{Field: field}
	err = v.latestResults(ctx, func(body []byte) {
		x, ok := numberAt(body, path)
		if !ok {
			s.Missing++
			return
		}
		values = append(values, x)
	})
	if err != nil {
		return nil, err
	}
	s.Count = len(values)
	if s.Count == 0 {
		return s, nil
	}
	slices.Sort(values)
	var mean float64
	for i, x := range values {
		mean += (x - mean) / float64(i+1) // no overflow of a large sum
	}
	s.Mean, s.Min, s.Max = mean, values[0], values[len(values)-1]
	s.P50, s.P90, s.P99 = percentile(values, 0.50), percentile(values, 0.90), percentile(values, 0.99)
	return s, nil
}

// latestResults calls fn with the body of each completed key's latest
// result, in file order.
func (v *lightView) latestResults(ctx context.Context, fn func(body []byte)) error {
	var canon []byte
	return scanRecords(ctx, v.results, func(off int64, lineNo int, _ []byte, rec record) error {
		var err error
		if canon, _, err = canonicalKey(canon[:0], rec.key); err != nil {
			return fmt.Errorf("checkpoint: %s line %d: %w", v.results.path, lineNo, err)
		}
		if s := v.lookup(canon, v.table.hash(canon)); s != nil && s.done() && s.offset() == off {
			fn(rec.body)
		}
		return nil
	})
}

// percentile of sorted values, q in [0, 1], interpolating linearly.
func percentile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// ErrBadField is returned (wrapped) by Summarize for a field path that is
// not one, such as "a..b".
var ErrBadField = errors.New("bad field path")

// parseFieldPath splits a dotted path, which may start with a dot as in jq;
// "" and "." are the whole value.
func parseFieldPath(field string) ([]string, error) {
	field = strings.TrimPrefix(field, ".")
	if field == "" {
		return nil, nil
	}
	segs := strings.Split(field, ".")
	if slices.Contains(segs, "") {
		return nil, fmt.Errorf("checkpoint: field %q has an empty part: %w", field, ErrBadField)
	}
	return segs, nil
}

// numberAt finds the number at path in the JSON value b without decoding
// the rest: it walks the bytes, skipping the fields it does not need.
func numberAt(b []byte, path []string) (float64, bool) {
	val, ok := valueAt(b, path)
	if !ok || len(val) == 0 {
		return 0, false
	}
	if c := val[0]; c != '-' && (c < '0' || c > '9') {
		return 0, false
	}
	x, err := strconv.ParseFloat(string(val), 64)
	return x, err == nil
}

// valueAt returns the JSON value at path in b.
func valueAt(b []byte, path []string) ([]byte, bool) {
	i := skipSpace(b, 0)
	for _, seg := range path {
		if i >= len(b) {
			return nil, false
		}
		var ok bool
		switch b[i] {
		case '{':
			i, ok = memberAt(b, i, seg)
		case '[':
			i, ok = elementAt(b, i, seg)
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
	}
	end, ok := skipValue(b, i)
	if !ok {
		return nil, false
	}
	return b[i:end], true
}

// memberAt returns where the value of field name starts in the object at
// b[i].
func memberAt(b []byte, i int, name string) (int, bool) {
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != '}' {
		end, ok := skipString(b, i)
		if !ok {
			return 0, false
		}
		match := string(b[i+1:end-1]) == name
		if !match && strings.IndexByte(string(b[i:end]), '\\') >= 0 {
			var s string
			match = json.Unmarshal(b[i:end], &s) == nil && s == name
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipSpace(b, i+1)
		if match {
			return i, true
		}
		if i, ok = skipValue(b, i); !ok {
			return 0, false
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return 0, false
}

// elementAt returns where element seg (a decimal index) starts in the array
// at b[i].
func elementAt(b []byte, i int, seg string) (int, bool) {
	n, err := strconv.Atoi(seg)
	if err != nil || n < 0 {
		return 0, false
	}
	i = skipSpace(b, i+1)
	for k := 0; i < len(b) && b[i] != ']'; k++ {
		if k == n {
			return i, true
		}
		var ok bool
		if i, ok = skipValue(b, i); !ok {
			return 0, false
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return 0, false
}
