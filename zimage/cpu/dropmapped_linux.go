package cpu

import (
	"os"
	"syscall"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// dropMapped drops the whole pages of b from this process's resident set
// when b lies in a checkpoint file mapping (weights.MappedFile): the
// mapping is read-only and shared, so the pages simply fault in again from
// the page cache if read later (a GEMV with few rows, a LoRA merge). Called
// once a weight is packed, so the DiT is not resident twice. Bytes not in a
// mapping (merged or converted copies on the heap) are left alone.
func dropMapped(b []byte) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if _, ok := weights.MappedFile(start); !ok {
		return
	}
	if _, ok := weights.MappedFile(start + uintptr(len(b)) - 1); !ok {
		return
	}
	page := uintptr(os.Getpagesize())
	skip := int((page - start%page) % page)
	if skip >= len(b) {
		return
	}
	n := (len(b) - skip) / int(page) * int(page)
	if n == 0 {
		return
	}
	_ = syscall.Madvise(b[skip:skip+n], syscall.MADV_DONTNEED)
}
