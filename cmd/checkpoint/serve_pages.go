package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"time"
)

// Reading a journal without reading it all: results pages start at a byte
// offset (the cursor), and the progress chart of a large journal is built
// from evenly spaced samples of it.

const (
	maxPageLimit = 200
	// searchBudget bounds the bytes one search request reads; the page
	// says how far it got, and the next request goes on from there.
	searchBudget = 32 << 20
	pageBlock    = 64 << 10
)

func (s *fsSource) Results(ctx context.Context, name string, q resultsQuery) (resultsPage, error) {
	if err := s.exists(name); err != nil {
		return resultsPage{}, err
	}
	page := resultsPage{Items: []resultItem{}, Cursor: q.Cursor, Next: -1, Unit: unitBytes}
	f, err := s.root.Open(name + resultsSuffix)
	if err != nil {
		return page, nil // no results yet
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return page, err
	}
	size := fi.Size()
	page.Size = size
	limit := q.Limit
	if limit <= 0 || limit > maxPageLimit {
		limit = 50
	}
	from := max(0, min(q.Cursor, size))
	if from > 0 {
		// A cursor from a request is untrusted: start at the next line
		// boundary at or after it.
		var b [1]byte
		if _, err := f.ReadAt(b[:], from-1); err == nil && b[0] != '\n' {
			from = readLines(f, from, size, make([]byte, pageBlock), func(int64, []byte) bool { return false })
		}
	}
	page.Cursor = from
	needle := bytes.ToLower([]byte(q.Search))
	end := size
	if len(needle) > 0 {
		end = min(size, from+searchBudget)
	}
	lower := []byte{}
	stopped := false
	next := readLines(f, from, end, make([]byte, pageBlock), func(off int64, line []byte) bool {
		if ctx.Err() != nil {
			stopped = true
			return false
		}
		if len(needle) > 0 {
			lower = append(lower[:0], line...)
			if !bytes.Contains(bytes.ToLower(lower), needle) {
				return true
			}
		}
		var rec struct {
			Key       json.RawMessage `json:"key"`
			Result    json.RawMessage `json:"result"`
			Timestamp string          `json:"timestamp"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Key == nil {
			return true // a blanked or damaged line: Open deals with those
		}
		page.Items = append(page.Items, resultItem{Key: rec.Key, Result: rec.Result, Time: rec.Timestamp, Offset: off})
		if len(page.Items) == limit {
			stopped = true
			return false
		}
		return true
	})
	page.ScannedTo = next
	if stopped || next < size {
		page.Next = next
	}
	if page.Next >= size || page.Next <= from {
		// The end, or only a line being written after the cursor.
		page.Next = -1
	}
	return page, ctx.Err()
}

const (
	// A journal up to exactJournal bytes is read line by line for the
	// progress chart; a larger one is sampled at progressSamples offsets.
	exactJournal    = 4 << 20
	progressSamples = 240
	maxPoints       = 400
)

// progress is the number of records saved over time, results and errors
// together.
func (s *fsSource) progress(name string) ([]progressPoint, bool) {
	var series [][]progressPoint
	sampled := false
	for _, suf := range []string{resultsSuffix, errorsSuffix} {
		p, smp := s.journalProgress(name + suf)
		if len(p) > 0 {
			series = append(series, p)
		}
		sampled = sampled || smp
	}
	return mergeProgress(series), sampled
}

// stepsProgress is a pipeline's progress: the records its steps (each a
// checkpoint NAME.STEP) saved over time, added up, as its counts are.
func (s *fsSource) stepsProgress(name string, steps []stepInfo) ([]progressPoint, bool) {
	var series [][]progressPoint
	sampled := false
	for _, st := range steps {
		p, smp := s.progress(name + "." + st.Name)
		if len(p) > 0 {
			series = append(series, p)
		}
		sampled = sampled || smp
	}
	return mergeProgress(series), sampled
}

func (s *fsSource) journalProgress(file string) ([]progressPoint, bool) {
	f, err := s.root.Open(file)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil, false
	}
	size := fi.Size()
	var pts []progressPoint
	if size <= exactJournal {
		n := int64(0)
		readLines(f, 0, size, make([]byte, pageBlock), func(_ int64, line []byte) bool {
			if t, ok := lineTime(line); ok {
				n++
				pts = append(pts, progressPoint{T: t, N: n})
			}
			return true
		})
		return thin(pts), false
	}
	// Sample: the first whole line after each of evenly spaced offsets gives
	// a time; the offset over the mean line length gives the count.
	var lineBytes, lines int64
	buf := make([]byte, 16<<10)
	for i := range progressSamples + 1 {
		off := size * int64(i) / progressSamples
		if i == progressSamples {
			off = max(0, size-int64(len(buf)))
		}
		p, nb, nl, ok := sampleAt(f, off, size, &buf, i == progressSamples)
		lineBytes += nb
		lines += nl
		if ok {
			pts = append(pts, p)
		}
	}
	if lines == 0 {
		return nil, true
	}
	for i := range pts {
		pts[i].N = pts[i].N * lines / lineBytes
	}
	if n := len(pts); n > 0 {
		pts[n-1].N = size * lines / lineBytes
	}
	return pts, true
}

// sampleAt reads the first whole line at or after off (the last one in the
// block when last is set) and returns its time, with the byte offset of its
// start in N, and the bytes and lines of the block's whole lines for the
// mean line length. The block grows for lines longer than it, to 4 MB.
func sampleAt(f io.ReaderAt, off, size int64, buf *[]byte, last bool) (p progressPoint, lineBytes, lines int64, ok bool) {
	for {
		b := *buf
		if last {
			off = max(0, size-int64(len(b)))
		}
		n, _ := f.ReadAt(b, off)
		b = b[:n]
		start := int64(0)
		if off > 0 {
			j := bytes.IndexByte(b, '\n')
			if j < 0 {
				b = nil
			} else {
				start = int64(j + 1)
			}
		}
		rest := b[min(int64(len(b)), start):]
		for {
			j := bytes.IndexByte(rest, '\n')
			if j < 0 {
				break
			}
			lineBytes += int64(j + 1)
			lines++
			if t, good := lineTime(rest[:j]); good && (!ok || last) {
				p, ok = progressPoint{T: t, N: off + start}, true
			}
			start += int64(j + 1)
			rest = rest[j+1:]
		}
		if lines > 0 || len(*buf) >= 4<<20 || int64(n) < int64(len(*buf)) {
			return p, lineBytes, lines, ok
		}
		*buf = make([]byte, 2*len(*buf))
	}
}

// thin keeps at most maxPoints points, the last one always.
func thin(pts []progressPoint) []progressPoint {
	if len(pts) <= maxPoints {
		return pts
	}
	step := (len(pts) + maxPoints - 1) / maxPoints
	out := make([]progressPoint, 0, maxPoints+1)
	for i := 0; i < len(pts); i += step {
		out = append(out, pts[i])
	}
	if out[len(out)-1] != pts[len(pts)-1] {
		out = append(out, pts[len(pts)-1])
	}
	return out
}

// mergeProgress adds cumulative series: at each time of any series, the sum
// of every series' count at that time.
func mergeProgress(series [][]progressPoint) []progressPoint {
	if len(series) == 1 {
		return series[0]
	}
	var times []time.Time
	for _, s := range series {
		for _, p := range s {
			times = append(times, p.T)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	times = slices.CompactFunc(times, func(a, b time.Time) bool { return a.Equal(b) })
	out := make([]progressPoint, 0, len(times))
	idx := make([]int, len(series))
	for _, t := range times {
		var n int64
		for k, s := range series {
			for idx[k] < len(s) && !s[idx[k]].T.After(t) {
				idx[k]++
			}
			if idx[k] > 0 {
				n += s[idx[k]-1].N
			}
		}
		out = append(out, progressPoint{T: t, N: n})
	}
	return thin(out)
}
