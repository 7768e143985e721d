package checkpoint

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The slot file, <name>_inflight, is a sequence of 4 KiB pages. A slot is a
// run of pages owned by one worker: one page, or more once a long key came
// along. Its first page starts with a header of three words
// (little-endian):
//
//	word 0  state: 0 while the slot is empty. When set: bit 63; bit 62 (this
//	        format); bit 61 (word 2 holds a CRC); bits 56-59 the key's form;
//	        bits 0-31 the key's length in bytes
//	word 1  the key's index slot when the item started: 0 if the key was
//	        not in the journals then
//	word 2  when bit 61 is set, CRC-32 (IEEE) of word 1 and the key
//
// The key follows the header in the first page and goes on in the next
// pages after their first 8 bytes, which stay 0, so that no page but a
// slot's first ever looks set. Forms: JSON as in the journals, or, for keys
// of the basic kinds, their bits (int64, uint64, float64 or float32, bool:
// little-endian) or a string's bytes, turned into JSON when read back: a
// store per item, not an encoding.
//
// Slots of the first version of this file (bit 62 clear) hold a JSON key
// of at most one page and, in words 1 and 2, the journals' ends instead.
//
// With memory mapping, a slot is set by stores into the mapping: the key
// and word 1 first, word 0 last, so a process killed between them leaves
// an empty slot. Without it (Windows and the rest; withoutMmap in tests),
// the slot is written with one WriteAt of its first page (after one for the
// rest of a long key) and carries the CRC, so a torn write is not mistaken
// for a key; clearing it is one more WriteAt.
const (
	flightPage      = 4096
	flightHeader    = 24
	flightPageRoom  = flightPage - flightHeader // of the key, in a slot's first page
	flightContRoom  = flightPage - 8            // in each further page
	flightChunk     = 16 * flightPage           // the file grows and is mapped by chunks
	flightMaxKey    = 16 << 20                  // longer keys are not tracked (logged once)
	flightSet       = 1 << 63
	flightV2        = 1 << 62
	flightHasCRC    = 1 << 61
	flightFormShift = 56
	flightFormMask  = 0xf
	flightLenMask   = 1<<32 - 1
)

// Forms of a key in a slot (bits 56-59 of the state word).
const (
	formJSON    = iota // the key's JSON, as in the journals
	formInt            // int64
	formUint           // uint64
	formFloat64        // float64 bits
	formFloat32        // float32 bits
	formBool           // one byte, 0 or 1
	formString         // the string's bytes
)

// flightFile is the slot file. Slots are handed to workers; a slot is
// written only by its owner, without locks.
type flightFile struct {
	path    string
	log     *slog.Logger
	writeAt bool // no memory mapping: slots are written with WriteAt

	mu      sync.Mutex
	f       *os.File
	size    int64    // of the file: where the next chunk goes
	maps    [][]byte // mappings, unmapped when the file is closed
	free    []*flightSlot
	held    int
	closed  bool
	failed  bool // growing failed once: tracking is off for this run
	created bool // this run created the file: Close removes it

	warnedLong atomic.Bool
	warnedIO   atomic.Bool
}

// A flightSlot is one worker's place in the slot file. A nil slot tracks
// nothing.
type flightSlot struct {
	ff      *flightFile
	mem     []byte         // the slot's pages: mapped, or with writeAt a copy
	base    unsafe.Pointer // &mem[0]
	off     int64          // of the slot in the file
	writeAt bool           // ff.writeAt
	set     bool           // with writeAt: the state word is written set
	buf     []byte         // scratch for keys that do not fit the first page
	iso     *sync.RWMutex
	mode    int // how the current item holds iso: 0 not, 1 shared, 2 alone
	pages   int
}

func newFlightSlot(ff *flightFile, mem []byte, off int64) *flightSlot {
	return &flightSlot{ff: ff, mem: mem, base: unsafe.Pointer(&mem[0]), off: off, pages: len(mem) / flightPage, writeAt: ff.writeAt}
}

// keyRoom is where a key that fits the first page goes.
func (s *flightSlot) keyRoom() []byte { return s.mem[flightHeader:flightPage:flightPage] }

// flightHead is the state word of a set slot.
func flightHead(form uint64, n int) uint64 {
	return flightSet | flightV2 | form<<flightFormShift | uint64(n)
}

// commit sets the slot: the key, whose state word is head, is in place (in
// the first page and, past flightPageRoom, the next ones).
func (s *flightSlot) commit(head uint64, then slot) {
	if s.writeAt {
		s.writeSet(head, then)
		return
	}
	// Plain stores, in this order: the compiler keeps stores in program
	// order, and a killed process leaves its memory as of an instruction,
	// so word 0 is never seen set over a partial key.
	binary.LittleEndian.PutUint64((*[8]byte)(unsafe.Add(s.base, 8))[:], uint64(then))
	binary.LittleEndian.PutUint64((*[8]byte)(s.base)[:], head)
}

// writeSet is commit without mapping: the rest of a long key first, then
// the first page, with a CRC over the key.
func (s *flightSlot) writeSet(head uint64, then slot) {
	n := int(head & flightLenMask)
	binary.LittleEndian.PutUint64(s.mem[8:], uint64(then))
	crc := crc32.ChecksumIEEE(s.mem[8:16])
	first := min(n, flightPageRoom)
	crc = crc32.Update(crc, crc32.IEEETable, s.mem[flightHeader:flightHeader+first])
	end := flightPage
	for rest := n - first; rest > 0; rest -= flightContRoom {
		m := min(rest, flightContRoom)
		crc = crc32.Update(crc, crc32.IEEETable, s.mem[end+8:end+8+m])
		end += flightPage
	}
	binary.LittleEndian.PutUint64(s.mem[16:], uint64(crc))
	binary.LittleEndian.PutUint64(s.mem, head|flightHasCRC)
	if end > flightPage {
		if _, err := s.ff.f.WriteAt(s.mem[flightPage:end], s.off+flightPage); err != nil {
			s.ff.ioFailed(err)
			return
		}
	}
	if _, err := s.ff.f.WriteAt(s.mem[:flightHeader+first], s.off); err != nil {
		s.ff.ioFailed(err)
		return
	}
	s.set = true
}

// commitLong copies key into the slot, taking more pages if needed, and
// sets it. It reports false if the key is not tracked.
func (s *flightSlot) commitLong(form uint64, key []byte, then slot) bool {
	n := len(key)
	if n > flightMaxKey {
		if s.ff.warnedLong.CompareAndSwap(false, true) {
			s.ff.log.Warn("checkpoint: a key too long to be tracked in flight", "file", s.ff.path, "bytes", n)
		}
		return false
	}
	if pages := flightPagesFor(n); pages > s.pages && !s.ff.enlarge(s, pages) {
		return false
	}
	c := copy(s.mem[flightHeader:flightPage], key)
	for p := flightPage; c < n; p += flightPage {
		c += copy(s.mem[p+8:p+flightPage], key[c:])
	}
	s.commit(flightHead(form, n), then)
	return true
}

// flightPagesFor is the pages a key of n bytes takes.
func flightPagesFor(n int) int {
	if n <= flightPageRoom {
		return 1
	}
	return 1 + (n-flightPageRoom+flightContRoom-1)/flightContRoom
}

// clear empties the slot: the item ended.
func (s *flightSlot) clear() {
	if s.writeAt {
		s.writeClear()
		return
	}
	binary.LittleEndian.PutUint64((*[8]byte)(s.base)[:], 0)
}

func (s *flightSlot) writeClear() {
	if !s.set {
		return
	}
	s.set = false
	var zero [8]byte
	if _, err := s.ff.f.WriteAt(zero[:], s.off); err != nil {
		s.ff.ioFailed(err)
	}
}

func (ff *flightFile) ioFailed(err error) {
	if ff.warnedIO.CompareAndSwap(false, true) {
		ff.log.Warn("checkpoint: could not write the in-flight file; items may go untracked", "file", ff.path, "err", err)
	}
}

// acquire hands out a free slot, growing the file if needed. It returns nil
// (no tracking) if ff is nil, closed, or cannot grow.
func (ff *flightFile) acquire() *flightSlot {
	if ff == nil {
		return nil
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.closed || ff.failed {
		return nil
	}
	if len(ff.free) == 0 {
		mem, off, err := ff.grow(flightChunk)
		if err != nil {
			ff.growFailed(err)
			return nil
		}
		for i := flightChunk/flightPage - 1; i >= 0; i-- {
			ff.free = append(ff.free, newFlightSlot(ff, mem[i*flightPage:(i+1)*flightPage:(i+1)*flightPage], off+int64(i*flightPage)))
		}
	}
	s := ff.free[len(ff.free)-1]
	ff.free = ff.free[:len(ff.free)-1]
	ff.held++
	return s
}

// enlarge moves s to a run of at least pages pages at the end of the file;
// its old pages become a free slot. s must be empty.
func (ff *flightFile) enlarge(s *flightSlot, pages int) bool {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.closed || ff.failed {
		return false
	}
	size := (pages*flightPage + flightChunk - 1) / flightChunk * flightChunk
	mem, off, err := ff.grow(size)
	if err != nil {
		ff.growFailed(err)
		return false
	}
	ff.free = append(ff.free, newFlightSlot(ff, s.mem, s.off))
	*s = flightSlot{ff: ff, mem: mem, base: unsafe.Pointer(&mem[0]), off: off, pages: len(mem) / flightPage,
		writeAt: ff.writeAt, buf: s.buf, iso: s.iso, mode: s.mode}
	return true
}

func (ff *flightFile) growFailed(err error) {
	ff.failed = true
	ff.log.Warn("checkpoint: in-flight tracking is off for this run", "file", ff.path, "err", err)
}

// grow adds size bytes (a multiple of flightChunk, so that mappings start
// on a page of any size up to 64 KiB) to the file. ff.mu is held.
func (ff *flightFile) grow(size int) ([]byte, int64, error) {
	if ff.f == nil {
		f, err := os.OpenFile(ff.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, 0, err
		}
		ff.f, ff.created = f, true
	}
	off := ff.size
	if err := ff.f.Truncate(off + int64(size)); err != nil {
		return nil, 0, err
	}
	ff.size += int64(size)
	if ff.writeAt {
		return make([]byte, size), off, nil // the file is zeros there too
	}
	mem, err := mapChunk(ff.f, off, size)
	if err != nil {
		return nil, 0, err
	}
	ff.maps = append(ff.maps, mem)
	return mem, off, nil
}

// release gives the slot back, cleared.
func (s *flightSlot) release() {
	if s == nil {
		return
	}
	s.end()
	ff := s.ff
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.held--
	ff.free = append(ff.free, s)
	if ff.closed && ff.held == 0 {
		ff.unmap()
	}
}

// close removes the file: after a clean Close nothing is in flight. The
// memory stays mapped until the last slot is released, so a Process still
// running past Close (a misuse) cannot fault. The file is closed before it
// is removed, as Windows requires, unless slots are still held.
func (ff *flightFile) close() error {
	if ff == nil {
		return nil
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.closed {
		return nil
	}
	ff.closed = true
	var err error
	if ff.held == 0 {
		err = ff.unmap()
	}
	if ff.created {
		if rerr := os.Remove(ff.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

func (ff *flightFile) unmap() error {
	var err error
	for _, m := range ff.maps {
		err = errors.Join(err, unmapChunk(m))
	}
	ff.maps, ff.free = nil, nil
	if ff.f != nil {
		err = errors.Join(err, ff.f.Close())
		ff.f = nil
	}
	return err
}

// flightRecord is a set slot read back from the file.
type flightRecord struct {
	key  []byte // JSON
	v2   bool
	then slot        // v2: the key's index slot when it started
	mark journalMark // v1: the journals' ends when it started
}

// readFlightSlots reads the set slots of a slot file. Slots that do not
// hold a whole, valid key are left out.
func readFlightSlots(path string) ([]flightRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []flightRecord
	for off := 0; off+flightPage <= len(b); off += flightPage {
		p := b[off:]
		st := binary.LittleEndian.Uint64(p)
		if st&flightSet == 0 {
			continue
		}
		if st&flightV2 == 0 {
			n := int(st &^ flightSet)
			if n == 0 || n > flightPageRoom {
				continue
			}
			out = append(out, flightRecord{
				key: append([]byte(nil), p[flightHeader:flightHeader+n]...),
				mark: journalMark{
					results: int64(binary.LittleEndian.Uint64(p[8:])),
					errors:  int64(binary.LittleEndian.Uint64(p[16:])),
				},
			})
			continue
		}
		key, ok := gatherFlightKey(p, int(st&flightLenMask))
		if !ok {
			continue
		}
		if st&flightHasCRC != 0 {
			crc := crc32.Update(crc32.ChecksumIEEE(p[8:16]), crc32.IEEETable, key)
			if uint64(crc) != binary.LittleEndian.Uint64(p[16:]) {
				continue // a torn write
			}
		}
		js, ok := flightKeyJSON(st>>flightFormShift&flightFormMask, key)
		if !ok {
			continue
		}
		out = append(out, flightRecord{key: js, v2: true, then: slot(binary.LittleEndian.Uint64(p[8:]))})
	}
	return out, nil
}

// gatherFlightKey copies the n bytes of the key of the slot starting p.
func gatherFlightKey(p []byte, n int) ([]byte, bool) {
	if n > flightMaxKey || len(p) < flightPage*flightPagesFor(n) {
		return nil, false
	}
	key := make([]byte, 0, n)
	key = append(key, p[flightHeader:flightHeader+min(n, flightPageRoom)]...)
	for pg := flightPage; len(key) < n; pg += flightPage {
		if binary.LittleEndian.Uint64(p[pg:]) != 0 {
			return nil, false // another slot: not a continuation page
		}
		key = append(key, p[pg+8:pg+8+min(n-len(key), flightContRoom)]...)
	}
	return key, true
}

// flightKeyJSON turns a key in the given form into its JSON, as the
// journals hold it.
func flightKeyJSON(form uint64, b []byte) ([]byte, bool) {
	var (
		js  []byte
		err error
	)
	switch form {
	case formJSON:
		return b, len(b) > 0
	case formInt, formUint, formFloat64:
		if len(b) != 8 {
			return nil, false
		}
		v := binary.LittleEndian.Uint64(b)
		switch form {
		case formInt:
			js, err = encodeInt[int64](64)(nil, int64(v))
		case formUint:
			js, err = encodeUint[uint64](64)(nil, v)
		default:
			js, err = encodeFloat[float64](64)(nil, math.Float64frombits(v))
		}
	case formFloat32:
		if len(b) != 4 {
			return nil, false
		}
		v := binary.LittleEndian.Uint32(b)
		js, err = encodeFloat[float32](32)(nil, math.Float32frombits(v))
	case formBool:
		if len(b) != 1 || b[0] > 1 {
			return nil, false
		}
		js, err = encodeBool[bool](nil, b[0] == 1)
	case formString:
		js, err = encodeString[string](nil, string(b))
	default:
		return nil, false
	}
	return js, err == nil
}
