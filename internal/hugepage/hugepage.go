// Package hugepage asks the kernel to back large, not yet touched Go
// buffers with transparent huge pages.
//
// The Go heap does not ask for huge pages, and on a kernel in THP "madvise"
// mode (the common default) a fresh 256 MB activation is then 65536 page
// faults, each zeroing 4 KiB, paid inside the op that first writes it. With
// MADV_HUGEPAGE on the buffer's 2 MiB-aligned interior the same first touch
// is 128 faults. The memory stays owned by the Go heap (freed by the GC like
// any slice); the advice only changes how its pages are backed, so no buffer
// can be unmapped while referenced.
package hugepage

import "unsafe"

// Size is the huge page size the advice is aligned to (x86-64 and arm64
// with 4 KiB base pages).
const Size = 2 << 20

// MinBytes is the smallest buffer worth advising: below a few huge pages
// the aligned interior is a small part of it.
const MinBytes = 4 * Size

// Float32s advises the huge-page-aligned interior of b (see Advise).
func Float32s(b []float32) {
	if len(b)*4 < MinBytes {
		return
	}
	Advise(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), len(b)*4))
}

// interior returns the offset and length of the largest Size-aligned run
// inside [addr, addr+n).
func interior(addr uintptr, n int) (off, length int) {
	start := (addr + Size - 1) &^ (Size - 1)
	end := (addr + uintptr(n)) &^ (Size - 1)
	if end <= start {
		return 0, 0
	}
	return int(start - addr), int(end - start)
}
