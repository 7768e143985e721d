package checkpoint

import (
	"sync"
	"sync/atomic"
)

// preallocator keeps disk blocks reserved ahead of the end of a journal that
// a runner appends to, so that an append never has to allocate them.
//
// Why: on ext4 an append that needs a new block waits for the file's
// block-map lock, which writeback holds while it allocates the blocks of
// earlier appends. In the bench's run of 20M saves that made single saves
// take 10 to 30 ms, the thread asleep in ext4_da_get_block_prep (issue 14).
// Blocks reserved with fallocate(FALLOC_FL_KEEP_SIZE) are already mapped, so
// an append into them takes no such lock; the file's size still grows only
// with its lines, so readers and the Python library see nothing different.
//
// The reservation runs on a goroutine of its own, started by an append that
// comes within half a chunk of the reserved end: no save waits for it. The
// journal's owner serialises the calls (the runner's lock); forget ends the
// goroutine before the file is truncated, release before it is closed.
// Where fallocate is not supported (other systems, some filesystems) the
// first failure turns it off for good. The zero value is ready; a nil
// *preallocator does nothing.
type preallocator struct {
	reserved atomic.Int64 // the end of the reserved blocks
	busy     atomic.Bool  // a goroutine is reserving
	off      atomic.Bool  // fallocate failed: not supported here
	running  sync.WaitGroup
}

const (
	// preallocChunk is how far ahead blocks are reserved: at 40 MB/s of
	// lines (the fastest single saver in the bench) a fifth of a second.
	preallocChunk = 8 << 20
	// preallocFrom leaves small journals alone: they take no reservation
	// and so no disk space beyond their lines.
	preallocFrom = 1 << 20
)

// ahead reserves the next chunk past size, the journal's new end, in the
// background if the reservation is running out.
func (p *preallocator) ahead(f appendFile, size int64) {
	if p == nil || size < preallocFrom || size+preallocChunk/2 <= p.reserved.Load() ||
		p.off.Load() || !p.busy.CompareAndSwap(false, true) {
		return
	}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		defer p.busy.Store(false)
		if err := reserveBlocks(f, size, preallocChunk); err != nil {
			p.off.Store(true)
			return
		}
		p.reserved.Store(size + preallocChunk)
	}()
}

// wait ends a reservation under way.
func (p *preallocator) wait() {
	if p != nil {
		p.running.Wait()
	}
}

// forget waits for a reservation under way and forgets what was reserved:
// the file is about to be cut, and its reserved blocks go with the cut.
func (p *preallocator) forget() {
	if p != nil {
		p.running.Wait()
		p.reserved.Store(0)
	}
}

// release waits for a reservation under way and gives back the blocks
// reserved past size, the journal's end, by truncating the file to it (on
// ext4 a truncate to the same size frees the blocks past the end). A job
// killed before its Close leaves at most a chunk reserved, until the next
// runner's Close.
func (p *preallocator) release(f appendFile, size int64) error {
	if p == nil {
		return nil
	}
	p.running.Wait()
	if p.reserved.Load() <= size {
		return nil
	}
	p.reserved.Store(0)
	return f.Truncate(size)
}
