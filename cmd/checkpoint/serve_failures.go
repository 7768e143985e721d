package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/checkpoint-go/checkpoint"
)

// Failures grouped by message, from the library's read-only View (keys
// whose latest outcome is an error) and the grouping of `checkpoint errors`
// (errorPattern).

// latestFailures streams the failures of name, calling fn for each until it
// returns false. Large checkpoints take the quick path (serve_quick.go).
func (s *fsSource) latestFailures(ctx context.Context, name string, fn func(checkpoint.Failure[string]) bool) error {
	if err := s.exists(name); err != nil {
		return err
	}
	if s.large(name) {
		fs, err := s.errorsOnlyFailures(ctx, name)
		if err != nil {
			return err
		}
		for _, f := range fs {
			ff := checkpoint.Failure[string]{Key: string(f.Key), Error: f.Error, Attempts: f.Attempts}
			if f.Time != nil {
				ff.Time = *f.Time
			}
			if !fn(ff) {
				break
			}
		}
		return nil
	}
	v, err := s.inspect(name)
	if err != nil {
		return err
	}
	defer v.Close()
	for f := range v.Failures() {
		if ctx.Err() != nil || !fn(f) {
			break
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	return ctx.Err()
}

func (s *fsSource) Failures(ctx context.Context, name string) ([]failureGroup, error) {
	groups := map[string]*failureGroup{}
	err := s.latestFailures(ctx, name, func(f checkpoint.Failure[string]) bool {
		p := errorPattern(f.Error)
		g := groups[p]
		if g == nil {
			g = &failureGroup{Pattern: p, Example: f.Error, SampleKeys: []json.RawMessage{}}
			groups[p] = g
		}
		g.Count++
		if len(g.SampleKeys) < 5 {
			g.SampleKeys = append(g.SampleKeys, json.RawMessage(f.Key))
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	out := make([]failureGroup, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b failureGroup) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Pattern, b.Pattern)
	})
	return out, nil
}

func (s *fsSource) FailureList(ctx context.Context, name, pattern string, limit int) ([]failure, error) {
	out := []failure{}
	err := s.latestFailures(ctx, name, func(f checkpoint.Failure[string]) bool {
		if pattern == "" || errorPattern(f.Error) == pattern {
			fl := failure{Key: json.RawMessage(f.Key), Error: f.Error, Attempts: f.Attempts}
			if !f.Time.IsZero() {
				t := f.Time
				fl.Time = &t
			}
			out = append(out, fl)
		}
		return len(out) < limit
	})
	return out, err
}
