package checkpoint

import (
	"syscall"
	"unsafe"
)

// mapTable maps size bytes (a power of two) of private anonymous memory
// aligned to size and marked for transparent huge pages, and with touch
// writes a byte of every 4 KiB page in order (see table.newChunk). It returns the
// aligned bytes and the whole mapping, which is larger to leave room for
// the alignment (its unused ends are address space, never touched), or
// nils if the system refuses.
func mapTable(size int, touch bool) (b, mapping []byte) {
	mapping, err := syscall.Mmap(-1, 0, 2*size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil
	}
	// A hint: where transparent huge pages are off, the pages are 4 KiB.
	_ = syscall.Madvise(mapping, syscall.MADV_HUGEPAGE)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(mapping))) & uintptr(size-1))
	b = mapping[off : off+size : off+size]
	for i := 0; touch && i < size; i += 4096 {
		b[i] = 0
	}
	return b, mapping
}

func unmapTable(mapping []byte) { _ = syscall.Munmap(mapping) }
