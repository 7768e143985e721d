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
// goroutine before the file is truncated, and journal.giveBack before it is
// closed. The first failure turns reservation off for good: fallocate is
// not supported there (other systems, some filesystems), or the disk is
// full, and then what a fallocate got before it failed is given back at
// the next append. The zero value is ready; a nil *preallocator does
// nothing.
type preallocator struct {
	reserved atomic.Int64 // the end of the reserved blocks
	busy     atomic.Bool  // a goroutine is reserving
	failed   atomic.Bool  // a fallocate failed
	off      bool         // failed, and given back; the owner's
	running  sync.WaitGroup
	// reserve is reserveBlocks; tests plant a failing one.
	reserve func(f appendFile, off, n int64) error
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
	if p == nil || p.off || size < preallocFrom {
		return
	}
	if p.failed.Load() {
		// A fallocate that failed part-way (ENOSPC) keeps the blocks it
		// got: on a full disk they may be the last free ones. Give them
		// back now, under the owner's lock, as no append runs meanwhile.
		p.running.Wait()
		p.off = true
		_ = trimReserved(f, size) // disk space only; Close tries again
		return
	}
	if size+preallocChunk/2 <= p.reserved.Load() || !p.busy.CompareAndSwap(false, true) {
		return
	}
	reserve := p.reserve
	if reserve == nil {
		reserve = reserveBlocks
	}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		defer p.busy.Store(false)
		if err := reserve(f, size, preallocChunk); err != nil {
			p.failed.Store(true)
			return
		}
		p.reserved.Store(size + preallocChunk)
	}()
}

// forget waits for a reservation under way and forgets what was reserved:
// the file is about to be cut, and its reserved blocks go with the cut.
func (p *preallocator) forget() {
	if p != nil {
		p.running.Wait()
		p.reserved.Store(0)
	}
}

// giveBack waits for a reservation under way and gives back the blocks
// reserved past the journal's end, this runner's or those a killed one
// left (Open calls it too). A dirty journal, with part of a line past its
// end, is left as it is: the next Open sets that part aside in a side file
// (cutTail) rather than have it cut here unseen.
func (j *journal) giveBack() error {
	j.pre.forget()
	if j.dirty || j.f == nil {
		return nil
	}
	return trimReserved(j.f, j.size)
}
