package pages

import (
	"os"
	"syscall"
	"unsafe"
)

// Drop returns the whole pages inside r (an unreferenced part of a
// reserve slab that stays allocated while other pieces live) to the OS;
// they read as zeros if ever touched again. Tails under 1 MiB are kept.
func Drop(r []float32) {
	if len(r)*4 < 1<<20 {
		return
	}
	DropBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(r))), len(r)*4))
}

// DropBytes drops the whole pages inside b from the resident set
// (MADV_DONTNEED): anonymous pages read as zeros afterwards, the pages of a
// read-only file mapping are read again from the page cache.
func DropBytes(b []byte) {
	if len(b) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	skip := int((page - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%page) % page)
	if skip >= len(b) {
		return
	}
	n := (len(b) - skip) / int(page) * int(page)
	if n == 0 {
		return
	}
	_ = syscall.Madvise(b[skip:skip+n], syscall.MADV_DONTNEED)
}
