package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Compact rewrites the journals of the checkpoint called name in dir so that
// each key keeps only its latest outcome: its latest result, or, for a key
// whose latest outcome is an error, its errors (they are its attempts). Lines
// are copied as written, so the Python library reads the same state. It
// returns the bytes of the two journals before and after. A journal with
// nothing to drop is left as it is.
//
// Like every function here that changes files, it takes the checkpoint's
// lock and fails at once with an error wrapping ErrLocked if a job holds it,
// and it is crash-safe: a crash at any moment leaves the old state or the new
// one, and the next Open (or change) finishes or undoes what was left.
func Compact(dir, name string) (before, after int64, err error) {
	err = edit(dir, name, func(e *editor) error {
		e.sameState = true
		before = e.results.size + e.errors.size
		// The results to keep are known from the index alone: each
		// completed key's latest line. So the results journal is not
		// parsed again, only copied, and only where it holds those lines.
		var copyResults, copyErrors copier
		supersededResults := e.resRecords > e.completed
		var offs []int64
		if supersededResults {
			offs = make([]int64, 0, e.completed)
		}
		liveErrors := 0
		for s := range e.ix.slots {
			switch {
			case !s.done():
				liveErrors += s.attempts()
			case supersededResults:
				offs = append(offs, s.offset())
			}
		}
		if supersededResults {
			copyResults = copyLines(offs, e.resRecords)
		}
		// All the errors of a failed key are its attempts: only errors of
		// keys that later succeeded go, and finding them takes a read.
		if e.errRecords > liveErrors {
			copyErrors = e.copyKept(func(_ string, s slot, _ int64) bool { return !s.done() })
		}
		after, err = e.rewrite(copyResults, copyErrors)
		return err
	})
	return before, after, err
}

// copyLines returns a copier that keeps the lines of j that start at offs
// (in any order) and drops the rest of the journal's records. It reads
// only the parts of the file that hold kept lines, and writes runs of
// adjacent kept lines in one piece, straight from its read buffer.
func copyLines(offs []int64, records int) copier {
	return func(j *journal, w *tempWriter) (size int64, dropped int, err error) {
		if !slices.IsSorted(offs) {
			slices.Sort(offs) // the index's order is the keys' first save, usually the same
		}
		buf := make([]byte, 4<<20)
		var pos int64    // file offset of buf[0]
		filled := 0      // bytes of buf read
		var run [2]int64 // kept bytes not yet written: [from, to) in the file, within buf
		flush := func() error {
			if run[1] > run[0] {
				copied, err := w.copyFrom(j.f, run[0], run[1]-run[0])
				size += copied
				if err != nil {
					return err
				}
				n, err := w.Write(buf[run[0]+copied-pos : run[1]-pos])
				size += int64(n)
				if err != nil {
					return err
				}
			}
			run = [2]int64{}
			return nil
		}
		for _, off := range offs {
			var end int64
			for {
				if off >= pos && off < pos+int64(filled) {
					if i := bytes.IndexByte(buf[off-pos:filled], '\n'); i >= 0 {
						end = off + int64(i) + 1
						break
					}
				}
				// Read on from off; what the run holds goes out first.
				if err := flush(); err != nil {
					return 0, 0, err
				}
				if off == pos && filled == len(buf) {
					buf = make([]byte, 2*len(buf)) // a line longer than the buffer
				}
				if off >= j.size || (off == pos && pos+int64(filled) == j.size) {
					return 0, 0, fmt.Errorf("%w: no whole line at offset %d", ErrCorrupt, off)
				}
				n, err := j.f.ReadAt(buf[:min(int64(len(buf)), j.size-off)], off)
				if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
					return 0, 0, err
				}
				pos, filled = off, n
			}
			if off != run[1] {
				if err := flush(); err != nil {
					return 0, 0, err
				}
				run[0] = off
			}
			run[1] = end
		}
		if err := flush(); err != nil {
			return 0, 0, err
		}
		return size, records - len(offs), nil
	}
}
