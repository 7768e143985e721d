package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/checkpoint-go/checkpoint"
)

// Compare for the web view. The parameters, metrics and key-level
// comparison belong to the library's Compare (issue 11); until it lands,
// the key-level part here holds both sides' latest results in memory and so
// only runs on journals up to compareCap bytes.

const (
	compareCap  = 16 << 20
	maxExamples = 5
)

func (s *fsSource) Compare(ctx context.Context, names []string) (comparison, error) {
	c := comparison{Names: names, Params: []compareValue{}, Metrics: []compareValue{}}
	for _, n := range names {
		if err := s.exists(n); err != nil {
			return c, err
		}
		row := s.row(n)
		c.Rows = append(c.Rows, row)
		// Overlaid trends: every metric, and the records saved over time.
		series := map[string][]metricPoint{}
		if ms, err := checkpoint.ReadMetrics(s.dir, n); err == nil {
			for m, pts := range ms {
				for _, p := range pts {
					series[m] = append(series[m], metricPoint{T: p.Time, Step: p.Step, Value: p.Value})
				}
				series[m] = thinMetric(series[m])
			}
		}
		pts, _ := s.progress(n)
		for _, p := range pts {
			series["records"] = append(series["records"], metricPoint{T: p.T, Value: float64(p.N)})
		}
		c.Series = append(c.Series, series)
	}
	c.Params = compareMaps(c.Rows, func(r experimentRow) map[string]any { return r.Params }, false)
	c.Metrics = compareMaps(c.Rows, func(r experimentRow) map[string]any {
		m := map[string]any{}
		for k, v := range r.Metrics {
			m[k] = v
		}
		return m
	}, true)
	if len(names) >= 2 {
		k, err := s.compareKeys(ctx, names[0], names[1])
		if err != nil {
			c.Note = err.Error()
		} else {
			c.Keys = k
		}
	}
	return c, nil
}

// compareMaps puts each name's values side by side, marking differences;
// with deltas, numbers also get their difference from the first.
func compareMaps(rows []experimentRow, get func(experimentRow) map[string]any, deltas bool) []compareValue {
	var keys []string
	seen := map[string]bool{}
	for _, r := range rows {
		for k := range get(r) {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	out := []compareValue{}
	for _, k := range keys {
		v := compareValue{Name: k}
		for i, r := range rows {
			val, ok := get(r)[k]
			if !ok {
				val = nil
			}
			v.Values = append(v.Values, val)
			if i > 0 && !reflect.DeepEqual(val, v.Values[0]) {
				v.Differ = true
			}
			if deltas {
				var d *float64
				a, okA := v.Values[0].(float64)
				b, okB := val.(float64)
				if okA && okB {
					x := b - a
					d = &x
				}
				v.Deltas = append(v.Deltas, d)
			}
		}
		out = append(out, v)
	}
	return out
}

type outcome struct {
	result json.RawMessage // nil when failed
	failed bool
}

func (s *fsSource) outcomes(ctx context.Context, name string) (map[string]outcome, []string, error) {
	m := map[string]outcome{}
	var order []string
	for _, suf := range []string{resultsSuffix, errorsSuffix} {
		f, err := s.root.Open(name + suf)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		if fi.Size() > compareCap {
			f.Close()
			return nil, nil, fmt.Errorf("key comparison skipped: %s is %d MB, over the %d MB this view compares in memory (the library's streaming Compare lifts this)", name+suf, fi.Size()>>20, compareCap>>20)
		}
		isErr := suf == errorsSuffix
		readLines(f, 0, fi.Size(), make([]byte, pageBlock), func(_ int64, line []byte) bool {
			var r struct {
				Key    json.RawMessage `json:"key"`
				Result json.RawMessage `json:"result"`
			}
			if json.Unmarshal(line, &r) != nil || r.Key == nil {
				return ctx.Err() == nil
			}
			k := string(r.Key)
			prev, seen := m[k]
			if !seen {
				order = append(order, k)
			}
			if isErr {
				// The errors journal keeps failures of keys that later
				// succeeded: a result wins.
				if !seen || prev.failed {
					m[k] = outcome{failed: true}
				}
			} else {
				m[k] = outcome{result: r.Result}
			}
			return ctx.Err() == nil
		})
		f.Close()
	}
	return m, order, ctx.Err()
}

func (s *fsSource) compareKeys(ctx context.Context, a, b string) (*keyComparison, error) {
	ma, orderA, err := s.outcomes(ctx, a)
	if err != nil {
		return nil, err
	}
	mb, orderB, err := s.outcomes(ctx, b)
	if err != nil {
		return nil, err
	}
	k := &keyComparison{Fields: []fieldDiff{}, ExamplesOnlyA: []json.RawMessage{}, ExamplesOnlyB: []json.RawMessage{}, ExamplesDiffer: []keyDiff{}}
	fields := map[string]*fieldDiff{}
	for _, key := range orderA {
		oa := ma[key]
		ob, ok := mb[key]
		if !ok {
			k.OnlyA++
			if len(k.ExamplesOnlyA) < maxExamples {
				k.ExamplesOnlyA = append(k.ExamplesOnlyA, json.RawMessage(key))
			}
			continue
		}
		k.Both++
		switch {
		case !oa.failed && ob.failed:
			k.DoneAFailedB++
		case oa.failed && !ob.failed:
			k.FailedADoneB++
		case !oa.failed && !ob.failed:
			if jsonEqual(oa.result, ob.result) {
				k.Equal++
				continue
			}
			k.Different++
			if len(k.ExamplesDiffer) < maxExamples {
				k.ExamplesDiffer = append(k.ExamplesDiffer, keyDiff{Key: json.RawMessage(key), A: oa.result, B: ob.result})
			}
			var fa, fb map[string]json.RawMessage
			if json.Unmarshal(oa.result, &fa) == nil && json.Unmarshal(ob.result, &fb) == nil {
				for _, name := range unionKeys(fa, fb) {
					va, vb := fa[name], fb[name]
					if jsonEqual(va, vb) {
						continue
					}
					fd := fields[name]
					if fd == nil {
						fd = &fieldDiff{Field: name, Examples: []keyDiff{}}
						fields[name] = fd
					}
					fd.Count++
					if len(fd.Examples) < maxExamples {
						fd.Examples = append(fd.Examples, keyDiff{Key: json.RawMessage(key), A: va, B: vb})
					}
				}
			}
		}
	}
	for _, key := range orderB {
		if _, ok := ma[key]; !ok {
			k.OnlyB++
			if len(k.ExamplesOnlyB) < maxExamples {
				k.ExamplesOnlyB = append(k.ExamplesOnlyB, json.RawMessage(key))
			}
		}
	}
	for _, fd := range fields {
		k.Fields = append(k.Fields, *fd)
	}
	slices.SortFunc(k.Fields, func(x, y fieldDiff) int {
		if x.Count != y.Count {
			return y.Count - x.Count
		}
		return bytes.Compare([]byte(x.Field), []byte(y.Field))
	})
	return k, nil
}

func unionKeys(a, b map[string]json.RawMessage) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// jsonEqual compares two JSON values by meaning, not spelling (Python
// writes ", " where Go writes ",").
func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
