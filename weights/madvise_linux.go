package weights

import (
	"os"
	"syscall"
	"unsafe"
)

// dontNeed drops the whole pages inside b from the resident set; for a
// read-only file mapping they are simply read again if touched later.
func dontNeed(b []byte) {
	if len(b) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	skip := int((page - addr%page) % page)
	if skip >= len(b) {
		return
	}
	n := (len(b) - skip) / int(page) * int(page)
	if n == 0 {
		return
	}
	_ = syscall.Madvise(b[skip:skip+n], syscall.MADV_DONTNEED)
}
