package checkpoint

import (
	"syscall"
	"unsafe"
)

// mapTable maps size bytes (a power of two) of private anonymous memory
// aligned to size and, with huge, marked for transparent huge pages (Open's
// tables, which prefault then writes in order: see table.newChunk). It
// returns the aligned bytes and the whole mapping, which is larger to leave
// room for the alignment (its unused ends are address space, never
// touched), or nils if the system refuses.
func mapTable(size int, huge bool) (b, mapping []byte) {
	mapping, err := syscall.Mmap(-1, 0, 2*size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil
	}
	// Huge pages for Open's tables only: a huge page is mapped whole at
	// its first fault, and with the kernel's default defrag setting
	// (madvise) that fault may compact memory first, in the faulting
	// thread. For a growth's chunk that thread is a save's: growing a
	// checkpoint from 0 to 20M keys, the longest save took 71 ms and 153
	// saves used over 10 ms of CPU with huge pages, against 10.5 ms and
	// none with them off (one run each, load about 1). So a growth's
	// chunks get 4 KiB pages, faulted one at a time as saves write them,
	// even where huge pages are the system's default; a grown table gets
	// huge pages at the next Open. Where huge pages are off, the hint
	// does nothing.
	advice := syscall.MADV_NOHUGEPAGE
	if huge {
		advice = syscall.MADV_HUGEPAGE
	}
	_ = syscall.Madvise(mapping, advice)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(mapping))) & uintptr(size-1))
	return mapping[off : off+size : off+size], mapping
}

func unmapTable(mapping []byte) { _ = syscall.Munmap(mapping) }
