package pages

import (
	"syscall"
	"unsafe"
)

// Drop returns the whole pages inside r (an unreferenced part of a
// reserve slab that stays allocated while other pieces live) to the OS;
// they read as zeros if ever touched again.
func Drop(r []float32) {
	if len(r)*4 < 1<<20 {
		return
	}
	const page = 4096
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(r))), len(r)*4)
	skip := int((page - uintptr(unsafe.Pointer(&b[0]))%page) % page)
	n := (len(b) - skip) &^ (page - 1)
	_ = syscall.Madvise(b[skip:skip+n], syscall.MADV_DONTNEED)
}
