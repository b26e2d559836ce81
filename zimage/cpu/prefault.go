package cpu

import "github.com/zimage/zimage/internal/pages"

// A fresh activation buffer is mapped in by the backend's threads before
// the op that asked for it runs, each thread a contiguous run of pages
// (MADV_POPULATE_WRITE where the kernel has it). Left to the op, its first
// writes fault the pages in; ops that interleave their threads' output
// within a page (a Winograd or GEMM tile of 2 rows is a fraction of a
// 4 KiB page at 512² and above) then often fault the same page from both
// threads at once — measured in a first 512² decode of the medium VAE:
// 88K of its 210K faults were such second faults, microseconds after the
// first. Populating is also cheaper per page than a write fault
// (≈1.3 vs 1.7–2 µs on the VMs measured).

// prefaultMin is the smallest fresh buffer (floats) populated up front:
// below it the pages are few and the op's own faults are cheap enough.
const prefaultMin = 256 << 10 // 1 MiB

// prefaultGrain is the run of floats one task populates (256 KiB).
const prefaultGrain = 64 << 10

// prefault maps in the pages of the fresh buffer buf.
func (b *Backend) prefault(buf []float32) {
	if len(buf) < prefaultMin {
		return
	}
	parallelFor(b.threads, len(buf), prefaultGrain, func(lo, hi int) {
		pages.Populate(buf[lo:hi])
	})
}
