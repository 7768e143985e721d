package main

// The quick path, for checkpoints whose journals are too large to index on
// every request (Inspect reads the whole results file, about the cost of an
// Open): a row from the meta file, the journals' sizes and their last
// lines, the lock from the kernel's list, and failures from the errors
// journal alone. No request on this path reads a whole results file.
//
// This copies a little of what the library's Inspect knows (lock holder,
// rate, side files); a cheap "Info without the index" in the library would
// replace it.

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"time"
)

// quickOver is the size of journals from which on a row takes the quick
// path.
const quickOver = 16 << 20

// large reports whether name's journals are over quickOver bytes together.
func (s *fsSource) large(name string) bool {
	var n int64
	for _, suf := range []string{resultsSuffix, errorsSuffix} {
		if fi, err := s.root.Stat(name + suf); err == nil {
			n += fi.Size()
		}
	}
	return n > quickOver
}

// quickRow builds one line of the Experiments table from the meta file, the
// journals' sizes and the timestamps at their ends.
func (s *fsSource) quickRow(name string) experimentRow {
	locks := heldLocks()
	r := experimentRow{Name: name, Kind: "checkpoint", Note: "counts from the meta file: the journals are too large to index on every request"}
	if b, err := s.root.ReadFile(name + metaSuffix); err == nil && len(b) > 0 {
		var m struct {
			StartedAt   string `json:"started_at"`
			LastUpdated string `json:"last_updated"`
			Total       int64  `json:"total_items"`
			Completed   int64  `json:"completed_items"`
			Failed      int64  `json:"failed_items"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			r.Note = "meta file unreadable: " + err.Error()
		}
		r.Total, r.Completed, r.Failed = m.Total, m.Completed, m.Failed
		r.StartedAt = parseTime(m.StartedAt)
		r.LastUpdated = parseTime(m.LastUpdated)
	} else {
		r.Note = "no meta file: counts unknown"
	}
	for _, suf := range []string{metaSuffix, resultsSuffix, errorsSuffix} {
		if fi, err := s.root.Stat(name + suf); err == nil {
			r.SizeBytes += fi.Size()
		}
	}
	for _, suf := range sideSuffixes {
		if fi, err := s.root.Stat(name + suf); err == nil && fi.Size() > 0 {
			r.SideFiles = append(r.SideFiles, name+suf)
		}
	}
	if fi, err := s.root.Stat(name + ".lock"); err == nil {
		r.Running = locks.held(fi)
	}
	// The journals are newer than a meta file refreshed once a second.
	var last time.Time
	if r.LastUpdated != nil {
		last = *r.LastUpdated
	}
	var recent []time.Time
	for _, suf := range []string{resultsSuffix, errorsSuffix} {
		// The last line gives the last update; a running job's lines of
		// the last minute give its rate.
		since := time.Time{}
		if r.Running {
			since = s.now().Add(-time.Minute)
		}
		ts := s.tailTimes(name+suf, since)
		recent = append(recent, ts...)
		if n := len(ts); n > 0 && ts[n-1].After(last) {
			last = ts[n-1]
		}
	}
	if !last.IsZero() {
		r.LastUpdated = &last
	}
	if r.Running {
		r.Rate = rateOver(recent, s.now(), time.Minute)
		if left := r.Total - r.Completed - r.Failed; r.Total > 0 && left > 0 && r.Rate > 0 {
			r.ETASeconds = float64(left) / r.Rate
		}
	}
	r.Status = statusOf(r, false)
	return r
}

// tailBytes is how much of a journal's end is read for its recent rate.
const tailBytes = 128 << 10

// tailTimes returns, in file order, the timestamps of the complete lines at
// the end of file from the last one back to the first older than since
// (only the last one for a zero since), reading at most tailBytes.
func (s *fsSource) tailTimes(file string, since time.Time) []time.Time {
	f, err := s.root.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	want := int64(tailBytes)
	if since.IsZero() {
		want = 8 << 10 // one line, unless lines are long
	}
	for {
		from := max(0, fi.Size()-want)
		buf := make([]byte, fi.Size()-from)
		n, _ := f.ReadAt(buf, from)
		ts, complete := linesBack(buf[:n], from == 0, since)
		if complete || from == 0 || want >= tailBytes {
			slices.Reverse(ts)
			return ts
		}
		want = tailBytes
	}
}

// linesBack parses timestamps from the last complete line of buf backwards
// until one is older than since. whole says buf starts at a line's start.
// complete is false when it ran out of lines before it was satisfied.
func linesBack(buf []byte, whole bool, since time.Time) (ts []time.Time, complete bool) {
	end := bytes.LastIndexByte(buf, '\n') // a line being written has none yet
	for end > 0 {
		start := bytes.LastIndexByte(buf[:end], '\n') + 1
		if start == 0 && !whole {
			return ts, false // the first line is cut
		}
		if t, ok := lineTime(buf[start:end]); ok {
			ts = append(ts, t)
			if since.IsZero() || t.Before(since) {
				return ts, true
			}
		}
		end = start - 1
	}
	return ts, true
}

// rateOver is records a second over the window before now. When the times
// seen do not reach back to the window's start (the tail read is bounded),
// it divides by the span they cover.
func rateOver(ts []time.Time, now time.Time, window time.Duration) float64 {
	if len(ts) == 0 {
		return 0
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	start := now.Add(-window)
	n := 0
	for _, t := range ts {
		if !t.Before(start) {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	span := window
	if first := ts[len(ts)-n]; n == len(ts) && first.After(start) {
		span = now.Sub(first) // everything we read is recent: rate over what we saw
	}
	if span < time.Second {
		span = time.Second
	}
	return float64(n) / span.Seconds()
}

type failureRec struct {
	Key       json.RawMessage `json:"key"`
	Error     string          `json:"error"`
	Attempt   int             `json:"attempt"`
	Timestamp string          `json:"timestamp"`
}

// errorsOnlyFailures reads the errors journal alone: each key's latest
// error and its number of attempts, in the order keys first failed. Without
// the results it cannot leave out keys that failed and later succeeded.
func (s *fsSource) errorsOnlyFailures(ctx context.Context, name string) ([]failure, error) {
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
