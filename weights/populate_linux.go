package weights

import "syscall"

const madvPopulateRead = 22 // MADV_POPULATE_READ (Linux 5.14), not in package syscall

// populate prefaults a whole mapping (page-aligned by mmap); errors (an old
// kernel's EINVAL, EFAULT past a truncated end) are ignored.
func populate(mapping []byte) {
	if len(mapping) > 0 {
		_ = syscall.Madvise(mapping, madvPopulateRead)
	}
}
