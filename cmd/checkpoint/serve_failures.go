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
	if s.kindOf(name) != "checkpoint" {
		return nil // a flow's or pipeline's failures are its steps'
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
	groups := failureGroups{}
	err := s.latestFailures(ctx, name, func(f checkpoint.Failure[string]) bool {
		groups.add(json.RawMessage(f.Key), f.Error)
		return true
	})
	if err != nil {
		return nil, err
	}
	return groups.sorted(), nil
}

// failureGroups gathers failures by errorPattern, as the web view lists
// them: a count, the first message as an example and up to 5 sample keys.
type failureGroups map[string]*failureGroup

func (gs failureGroups) add(key json.RawMessage, msg string) {
	p := errorPattern(msg)
	g := gs[p]
	if g == nil {
		g = &failureGroup{Pattern: p, Example: msg, SampleKeys: []json.RawMessage{}}
		gs[p] = g
	}
	g.Count++
	if len(g.SampleKeys) < 5 {
		g.SampleKeys = append(g.SampleKeys, key)
	}
}

// sorted returns the groups, most frequent first.
func (gs failureGroups) sorted() []failureGroup {
	out := make([]failureGroup, 0, len(gs))
	for _, g := range gs {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b failureGroup) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Pattern, b.Pattern)
	})
	return out
}

func (s *fsSource) FailureList(ctx context.Context, name, pattern string, limit int) ([]failure, error) {
	out := []failure{}
	err := s.latestFailures(ctx, name, func(f checkpoint.Failure[string]) bool {
		if pattern == "" || errorPattern(f.Error) == pattern {
			out = append(out, failure{Key: json.RawMessage(f.Key), Error: f.Error, Attempts: f.Attempts, Time: timeOrNil(f.Time)})
		}
		return len(out) < limit
	})
	return out, err
}
