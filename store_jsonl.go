package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// appendFile is what a journal needs from its file. *os.File is the real
// one; tests put a failing file behind it.
type appendFile interface {
	io.Reader
	io.ReaderAt
	io.Writer
	Truncate(size int64) error
	Sync() error
	Close() error
}

// journal is one append-only JSONL file: the results or the errors.
//
// Every record is one complete line handed to the kernel in one write call,
// so a record whose save returned survives the death of the process. The
// caller serialises appends (the runner's mutex); reads use ReadAt and may
// run alongside, up to size.
type journal struct {
	path string
	f    appendFile
	size int64 // bytes of complete lines: the next record's offset
	// dirty is set when a failed write may have left part of a line behind
	// and cutting it off failed too; nothing is appended until it is cut.
	dirty bool

	sync        *syncer       // forces appends to stable storage per the policy
	pre         *preallocator // blocks reserved ahead of appends; nil: none
	skipCorrupt bool          // WithSkipCorrupt
	// readOnly journals (Inspect) belong to a file a job may be writing: load
	// reads a prefix of whole lines and repairs nothing.
	readOnly bool
}

func openJournal(path string, o *options) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	j := &journal{path: path, f: f, skipCorrupt: o.skipCorrupt}
	if o.wrapFile != nil {
		j.f = o.wrapFile(f)
	}
	j.sync = newSyncer(o.sync, path, func() error { return syncData(j.f) }, o.logger)
	return j, nil
}

// append writes line, which ends in a newline, and returns its offset.
func (j *journal) append(line []byte) (int64, error) {
	if j.dirty {
		if err := j.cutFile(j.size); err != nil {
			return 0, fmt.Errorf("checkpoint: %s: cut a partial line: %w", j.path, err)
		}
		j.dirty = false
	}
	off := j.size
	n, err := j.f.Write(line)
	if err != nil {
		if n > 0 {
			// Never leave half a record for the next one to be glued to.
			if terr := j.cutFile(off); terr != nil {
				j.dirty = true
			}
		}
		return 0, fmt.Errorf("checkpoint: write %s: %w", j.path, err)
	}
	j.size += int64(n)
	j.pre.ahead(j.f, j.size)
	return off, nil
}

// readLine returns the line that starts at off, without its newline.
// timeAt is the timestamp of the line at off in j (see lineTime).
func (j *journal) timeAt(off int64) (time.Time, bool) {
	line, err := j.readLine(off)
	if err != nil {
		return time.Time{}, false
	}
	return lineTime(line)
}

func (j *journal) readLine(off int64) ([]byte, error) {
	buf := make([]byte, 512)
	var line []byte
	for {
		n, err := j.f.ReadAt(buf, off)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return append(line, buf[:i]...), nil
		}
		line = append(line, buf[:n]...)
		off += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("checkpoint: read %s: %w", j.path, err)
		}
		if len(buf) < 1<<20 {
			buf = make([]byte, 2*len(buf))
		}
	}
}

// lineScanner reads the complete lines of a file between two offsets with
// ReadAt, in large blocks, without copying lines out of its buffer.
type lineScanner struct {
	buf []byte
}

// scan calls fn for each complete line in [from, to), with its offset and its
// 1-based number counted from from. The slice passed to fn is only valid
// during the call. It returns the offset just past the last complete line;
// the bytes from there to to have no newline.
func (s *lineScanner) scan(r io.ReaderAt, from, to int64, fn func(off int64, lineNo int, line []byte) error) (int64, error) {
	if s.buf == nil {
		s.buf = make([]byte, 1<<20)
	}
	lineNo := 0
	pos := from // file offset of s.buf[0]
	filled := 0
	for pos+int64(filled) < to {
		if filled == len(s.buf) {
			// One line fills the whole buffer: make room.
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		want := min(int64(len(s.buf)-filled), to-pos-int64(filled))
		n, err := r.ReadAt(s.buf[filled:filled+int(want)], pos+int64(filled))
		filled += n
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			if errors.Is(err, io.EOF) {
				break // the file shrank under us (Clear): stop at what was read
			}
			return pos, err
		}
		start := 0
		for {
			i := bytes.IndexByte(s.buf[start:filled], '\n')
			if i < 0 {
				break
			}
			lineNo++
			if err := fn(pos+int64(start), lineNo, s.buf[start:start+i]); err != nil {
				return pos + int64(start), err
			}
			start += i + 1
		}
		copy(s.buf, s.buf[start:filled])
		pos += int64(start)
		filled -= start
	}
	return pos, nil
}

// load reads the whole file, calling fn for every record, and repairs a torn
// tail: a last line without a newline. If that line is a complete record it
// is kept and given its newline; otherwise it is cut off and kept in a .torn
// file beside the journal. A bad line anywhere else is an error wrapping
// ErrCorrupt that names the line: it is never silently dropped.
//
// load reads on the caller's goroutine; Open's loader splits a large file
// among goroutines (loadParallel) and ends with the same finishLoad.
func (j *journal) load(log *slog.Logger, fn func(off int64, rec record) error) error {
	size, err := fileSize(j.f)
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", j.path, err)
	}
	var sc lineScanner
	var st loadState
	good, err := sc.scan(j.f, 0, size, func(off int64, lineNo int, line []byte) error {
		st.lastLine = lineNo
		rec, kind := classifyLine(line)
		switch kind {
		case lineBlank:
			return nil
		case lineBad:
			st.held.add(off, lineNo, line)
			return nil
		}
		if err := j.refuseHeld(&st.held, &st.bad); err != nil {
			return err
		}
		if err := fn(off, rec); err != nil {
			return fmt.Errorf("checkpoint: %s line %d: %w", j.path, lineNo, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.good = good
	return j.finishLoad(log, size, &st, fn)
}

// loadState is what a load carries from line to line: bad lines are held
// back until a good one follows (bad lines with nothing good after them are
// a damaged end: a power cut can zero the last blocks, which is repaired like
// a torn tail), bad lines set aside (WithSkipCorrupt), the number of the last
// complete line, and the offset just past it.
type loadState struct {
	held, bad corruptLines
	lastLine  int
	good      int64
}

// lineKind is what a line of a journal is to a load.
type lineKind uint8

const (
	lineRecord lineKind = iota
	lineBlank           // skipped: a repair blanks the lines it sets aside
	lineBad             // not a record: garbage, or a line cut short
)

// classifyLine parses one line of a journal, without its newline (a CR
// before it is dropped).
func classifyLine(line []byte) (record, lineKind) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1] // bytes.TrimSuffix: 8 ns a line in Open's profile
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return record{}, lineBlank
	}
	rec, ok := parseRecord(line)
	if !ok || !rec.whole { // !whole: a line cut short that looks framed
		return rec, lineBad
	}
	return rec, lineRecord
}

// finishLoad ends a load once every complete line is read: a read-only
// journal stops before a torn or damaged end; otherwise a whole last record
// without its newline is kept, and a torn or damaged end is cut off into the
// .torn file, after any bad lines were set aside.
func (j *journal) finishLoad(log *slog.Logger, size int64, st *loadState, fn func(off int64, rec record) error) error {
	good := st.good
	if j.readOnly {
		j.size = readOnlyEnd(good, &st.held)
		return nil
	}
	if good < size {
		// A last record that is whole and only lacks its newline is kept.
		// A record cut short can still look framed to parseRecord (a result
		// ending in an object whose last field is "timestamp"), so it must be
		// whole JSON too, which no strict prefix of a line is.
		tail := make([]byte, size-good)
		if _, err := j.f.ReadAt(tail, good); err != nil {
			return fmt.Errorf("checkpoint: read %s: %w", j.path, err)
		}
		if rec, ok := parseRecord(bytes.TrimSuffix(tail, []byte{'\r'})); ok && json.Valid(tail) {
			if err := j.refuseHeld(&st.held, &st.bad); err != nil {
				return err
			}
			if err := j.setAside(log, &st.bad); err != nil {
				return err
			}
			return j.keepLastRecord(log, good, size, st.lastLine+1, rec, fn)
		}
	}
	if err := j.setAside(log, &st.bad); err != nil {
		return err
	}
	if len(st.held.spans) > 0 {
		good = st.held.spans[0].off
	}
	j.size = good
	if good == size {
		return nil
	}
	return j.cutTail(log, good, size, st.lastLine+1)
}

// refuseHeld handles bad lines once a good line follows them: they are
// damage in the middle of the file, an error unless WithSkipCorrupt, which
// sets them aside.
func (j *journal) refuseHeld(held, bad *corruptLines) error {
	if len(held.spans) == 0 {
		return nil
	}
	if !j.skipCorrupt {
		first := held.spans[0]
		return fmt.Errorf("%w: %s line %d is not a record (WithSkipCorrupt opens past it): %.60q",
			ErrCorrupt, j.path, first.lineNo, bytes.TrimSuffix(held.data[:first.n], []byte{'\r'}))
	}
	pos := 0
	for _, sp := range held.spans {
		bad.add(sp.off, sp.lineNo, held.data[pos:pos+sp.n])
		pos += sp.n + 1
	}
	*held = corruptLines{}
	return nil
}

// keepLastRecord gives a whole last record the newline it lacks.
func (j *journal) keepLastRecord(log *slog.Logger, good, size int64, lineNo int, rec record, fn func(int64, record) error) error {
	{
		j.size = size
		if _, err := j.append([]byte{'\n'}); err != nil {
			return err
		}
		j.size = size + 1
		log.Warn("checkpoint: the last line had no newline; added it", "file", j.path, "line", lineNo)
		if err := fn(good, rec); err != nil {
			return fmt.Errorf("checkpoint: %s line %d: %w", j.path, lineNo, err)
		}
		return nil
	}
}

// cutTail cuts the file back to good, keeping the bytes cut in a .torn file
// beside it: a torn last line, or damaged lines with nothing good after them.
func (j *journal) cutTail(log *slog.Logger, good, size int64, lineNo int) error {
	tail := make([]byte, size-good)
	if _, err := j.f.ReadAt(tail, good); err != nil {
		return fmt.Errorf("checkpoint: read %s: %w", j.path, err)
	}
	side := j.path + ".torn"
	if err := appendSync(side, append(tail, '\n')); err != nil {
		return fmt.Errorf("checkpoint: save the torn tail of %s: %w", j.path, err)
	}
	if err := j.cutFile(good); err != nil {
		return fmt.Errorf("checkpoint: cut the torn tail of %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("checkpoint: sync %s: %w", j.path, err)
	}
	log.Warn("checkpoint: cut a torn last line (the process died while writing it)",
		"file", j.path, "line", lineNo, "bytes", len(tail), "saved_to", side)
	return nil
}

// cutFile truncates the file to size. Blocks reserved past the end go with
// the cut, so a reservation under way is waited for and forgotten first.
func (j *journal) cutFile(size int64) error {
	j.pre.forget()
	return j.f.Truncate(size)
}

// truncate empties the journal.
func (j *journal) truncate() error {
	if err := j.cutFile(0); err != nil {
		return fmt.Errorf("checkpoint: clear %s: %w", j.path, err)
	}
	j.size = 0
	j.dirty = false
	return j.f.Sync()
}

func fileSize(f appendFile) (int64, error) {
	st, ok := f.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return 0, errors.New("file has no size")
	}
	fi, err := st.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// appendSync appends b to the file at path and syncs it.
func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sizeHints guesses, from the journal's first block, how many lines it
// holds and how many bytes their keys take, so that Open sizes the index and
// the key arena once instead of growing them step by step.
func (j *journal) sizeHints() (lines, keyBytes int) {
	size, err := fileSize(j.f)
	if err != nil || size == 0 {
		return 0, 0
	}
	buf := make([]byte, min(size, 64<<10))
	n, _ := j.f.ReadAt(buf, 0)
	sampled, sampledLines, sampledKeys := 0, 0, 0
	for line := range bytes.Lines(buf[:n]) {
		if line[len(line)-1] != '\n' {
			break // cut by the sample's end
		}
		sampled += len(line)
		sampledLines++
		if rec, ok := parseRecord(bytes.TrimRight(line, "\r\n")); ok {
			sampledKeys += len(rec.key)
		}
	}
	if sampled == 0 {
		return 1, 0 // one line longer than the sample
	}
	return int(size * int64(sampledLines) / int64(sampled)), int(size * int64(sampledKeys) / int64(sampled))
}
