package hugepage

import (
	"sync/atomic"
	"syscall"
	"unsafe"
)

const madvHugepage = 14 // MADV_HUGEPAGE (not in package syscall)

// off is set once the kernel refuses the advice (THP compiled out or
// disabled), so later buffers skip the system call.
var off atomic.Bool

// Advise marks the huge-page-aligned interior of b for transparent huge
// pages. It is advisory: errors are ignored, and pages already touched stay
// as they are (khugepaged may collapse them later).
func Advise(b []byte) {
	if len(b) < MinBytes || off.Load() {
		return
	}
	o, n := interior(uintptr(unsafe.Pointer(unsafe.SliceData(b))), len(b))
	if n == 0 {
		return
	}
	if err := syscall.Madvise(b[o:o+n], madvHugepage); err != nil {
		off.Store(true)
	}
}
