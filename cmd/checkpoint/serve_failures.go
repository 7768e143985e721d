package main

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
)

// Failures grouped by message. Provisional until the library's inspection
// API (issue 8) lands with its own grouping: then these call it.

type failureRec struct {
	Key       json.RawMessage `json:"key"`
	Error     string          `json:"error"`
	Attempt   int             `json:"attempt"`
	Timestamp string          `json:"timestamp"`
}

// latestFailures reads the errors journal: each key's latest error and its
// number of attempts, in the order keys first failed.
func (s *fsSource) latestFailures(ctx context.Context, name string) ([]failure, error) {
	if err := s.exists(name); err != nil {
		return nil, err
	}
	f, err := s.root.Open(name + errorsSuffix)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	byKey := map[string]int{}
	var out []failure
	readLines(f, 0, fi.Size(), make([]byte, pageBlock), func(_ int64, line []byte) bool {
		var r failureRec
		if json.Unmarshal(line, &r) != nil || r.Key == nil {
			return ctx.Err() == nil
		}
		i, ok := byKey[string(r.Key)]
		if !ok {
			i = len(out)
			byKey[string(r.Key)] = i
			out = append(out, failure{Key: r.Key})
		}
		out[i].Error = r.Error
		out[i].Attempts = max(out[i].Attempts+1, r.Attempt)
		out[i].Time = parseTime(r.Timestamp)
		return ctx.Err() == nil
	})
	return out, ctx.Err()
}

func (s *fsSource) Failures(ctx context.Context, name string) ([]failureGroup, error) {
	fs, err := s.latestFailures(ctx, name)
	if err != nil {
		return nil, err
	}
	groups := map[string]*failureGroup{}
	for _, f := range fs {
		p := errorPattern(f.Error)
		g := groups[p]
		if g == nil {
			g = &failureGroup{Pattern: p, Example: f.Error, SampleKeys: []json.RawMessage{}}
			groups[p] = g
		}
		g.Count++
		if len(g.SampleKeys) < 5 {
			g.SampleKeys = append(g.SampleKeys, f.Key)
		}
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
	fs, err := s.latestFailures(ctx, name)
	if err != nil {
		return nil, err
	}
	out := []failure{}
	for _, f := range fs {
		if pattern == "" || errorPattern(f.Error) == pattern {
			out = append(out, f)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

var (
	uuidRE   = regexp.MustCompile(`\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b`)
	quotedRE = regexp.MustCompile(`"[^"]*"|'[^']*'`)
	hexRE    = regexp.MustCompile(`\b(?:0x[0-9a-fA-F]+|[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*|[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*)\b`)
	digitsRE = regexp.MustCompile(`[0-9]+`)
)

// errorPattern collapses what differs between failures of one cause:
// quoted values, UUIDs, hex ids (of at least 8 digits, or 0x...) and
// numbers.
func errorPattern(msg string) string {
	p := quotedRE.ReplaceAllString(msg, `"…"`)
	p = uuidRE.ReplaceAllString(p, "<id>")
	p = hexRE.ReplaceAllStringFunc(p, func(h string) string {
		if strings.HasPrefix(h, "0x") || len(h) >= 8 {
			return "<id>"
		}
		return h
	})
	return digitsRE.ReplaceAllString(p, "N")
}
