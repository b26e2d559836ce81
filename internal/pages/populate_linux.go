package pages

import (
	"os"
	"syscall"
	"unsafe"
)

const madvPopulateWrite = 23 // MADV_POPULATE_WRITE (Linux 5.14), not in package syscall

// Populate maps in the pages of r for writing, as a first write to each
// would, but in one call (cheaper per page than a fault); where the kernel
// lacks MADV_POPULATE_WRITE it writes a zero to every page instead, so r
// must be memory whose values do not matter yet, or zeros.
func Populate(r []float32) {
	if len(r) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(r))), len(r)*4)
	page := uintptr(os.Getpagesize())
	skip := int((page - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%page) % page)
	if skip < len(b) {
		if n := (len(b) - skip) / int(page) * int(page); n > 0 && syscall.Madvise(b[skip:skip+n], madvPopulateWrite) == nil {
			if skip > 0 {
				r[0] = 0 // the partial first page
			}
			r[len(r)-1] = 0 // and the last
			return
		}
	}
	touch(r)
}
