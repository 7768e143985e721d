package checkpoint

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
)

// corruptLines are the damaged lines that Open skips under WithSkipCorrupt.
type corruptLines struct {
	data  []byte // the lines' bytes, each followed by a newline
	spans []corruptSpan
}

type corruptSpan struct {
	off    int64
	n      int // bytes, without the newline
	lineNo int
}

func (c *corruptLines) add(off int64, lineNo int, line []byte) {
	c.data = append(append(c.data, line...), '\n')
	c.spans = append(c.spans, corruptSpan{off: off, n: len(line), lineNo: lineNo})
}

// setAside keeps the skipped lines in a side file, synced, and only then
// overwrites them with spaces in the journal. Offsets of the other lines do
// not move, and a blank line is skipped by every later load. A crash between
// the two steps leaves the lines in the journal, to be set aside again.
func (j *journal) setAside(log *slog.Logger, c *corruptLines) error {
	if len(c.spans) == 0 {
		return nil
	}
	side := j.path + ".corrupt"
	if err := appendSync(side, c.data); err != nil {
		return fmt.Errorf("checkpoint: save the corrupt lines of %s: %w", j.path, err)
	}
	// The journal is open for appending, where positioned writes are refused.
	f, err := os.OpenFile(j.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("checkpoint: blank the corrupt lines of %s: %w", j.path, err)
	}
	spaces := bytes.Repeat([]byte{' '}, 64<<10)
	for _, sp := range c.spans {
		for done := 0; done < sp.n; {
			n := min(sp.n-done, len(spaces))
			if _, err := f.WriteAt(spaces[:n], sp.off+int64(done)); err != nil {
				f.Close()
				return fmt.Errorf("checkpoint: blank line %d of %s: %w", sp.lineNo, j.path, err)
			}
			done += n
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: sync %s: %w", j.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("checkpoint: blank the corrupt lines of %s: %w", j.path, err)
	}
	for _, sp := range c.spans {
		log.Warn("checkpoint: skipped a corrupt line; its bytes are kept in the side file",
			"file", j.path, "line", sp.lineNo, "offset", sp.off, "bytes", sp.n, "saved_to", side)
	}
	return nil
}
