package main

import (
	"context"
	"reflect"
	"slices"

	"github.com/checkpoint-go/checkpoint"
)

// Compare for the web view. The parameters, metrics and key-level
// comparison belong to the library's Compare (issue 11); until it lands,
// the key-level part here holds both sides' latest results in memory and so
// only runs on journals up to compareCap bytes.

const maxExamples = 5

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

// compareKeys is the library's streaming Compare of the first two, in the
// shape the page shows.
func (s *fsSource) compareKeys(ctx context.Context, a, b string) (*keyComparison, error) {
	c, err := checkpoint.Compare(ctx, checkpoint.Ref{Dir: s.dir, Name: a}, checkpoint.Ref{Dir: s.dir, Name: b}, checkpoint.WithExamples(maxExamples))
	if err != nil {
		return nil, err
	}
	k := &keyComparison{
		OnlyA: c.OnlyA.Count, OnlyB: c.OnlyB.Count, Both: c.Both,
		DoneAFailedB: c.FailedOnlyInB.Count, FailedADoneB: c.FailedOnlyInA.Count, FailedBoth: c.FailedInBoth.Count,
		Equal: c.Equal, Different: c.Different,
		Fields:        []fieldDiff{},
		ExamplesOnlyA: append([]string{}, c.OnlyA.Examples...),
		ExamplesOnlyB: append([]string{}, c.OnlyB.Examples...),
	}
	for _, f := range c.Fields {
		fd := fieldDiff{Field: f.Field, Count: f.Count, Examples: []keyDiff{}}
		for _, e := range f.Examples {
			fd.Examples = append(fd.Examples, keyDiff{Key: e.Key, A: e.A, B: e.B})
		}
		k.Fields = append(k.Fields, fd)
	}
	return k, nil
}
