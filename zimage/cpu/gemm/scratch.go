package gemm

import (
	"math/bits"
	"sync"
	"unsafe"

	"github.com/zimage/zimage/internal/pages"
)

// Scratch buffers (packed panels, the bf16 conv image) are kept on a free
// list by size class (bucket b holds capacities in (2^(b-1), 2^b]). The list
// is not a sync.Pool: the GC empties those every cycle, and with a heap of a
// few GB that was every few convolutions, each taking a fresh image buffer
// (page faults and kernel zeroing: ~600 MB per 512² VAE decode). Rule: at
// most scratchCap bytes are kept; a buffer that would pass it pushes out the
// least recently returned ones, and a buffer larger than the cap is never
// kept — the sizes in use now stay, those of an earlier stage or resolution
// go.
//
// A fresh buffer has the whole class's capacity 2^b (above 1 MiB: the
// request rounded up to a whole MiB), so it serves later requests of its
// class. ReserveScratch pre-faults a slab that misses are
// carved from instead, each piece just large enough (see ReserveScratch).
var scratchCap int64 = 512 << 20

type scratchBuf struct {
	p   *[]float32
	seq uint64
}

var scratch struct {
	mu      sync.Mutex
	free    [48][]scratchBuf // by class, in return order
	bytes   int64
	seq     uint64
	reserve []float32 // pre-faulted memory not handed out yet
}

// getBuf returns a scratch slice of n floats starting on a 64-byte
// boundary (so packed panels never split cache lines). Release it with
// putBuf.
func getBuf(n int) *[]float32 {
	n = max(n, 1)
	b := bits.Len(uint(n - 1))
	scratch.mu.Lock()
	l := scratch.free[b]
	for i := len(l) - 1; i >= 0; i-- {
		if p := l[i].p; cap(*p) >= n {
			copy(l[i:], l[i+1:])
			l[len(l)-1] = scratchBuf{}
			scratch.free[b] = l[:len(l)-1]
			scratch.bytes -= 4 * int64(cap(*p))
			scratch.mu.Unlock()
			*p = (*p)[:n]
			return p
		}
	}
	if r := scratch.reserve; len(r) >= n {
		k := min(len(r), (n+15)&^15) // the next piece stays 64-byte aligned
		scratch.reserve = r[k:]
		scratch.mu.Unlock()
		s := r[:n:k]
		return &s
	}
	scratch.mu.Unlock()
	c := 1 << b
	if c > bigScratch {
		c = (n + bigScratch - 1) &^ (bigScratch - 1)
	}
	raw := make([]float32, c+16)
	off := 0
	if mis := uintptr(unsafe.Pointer(&raw[0])) & 63; mis != 0 {
		off = int(64-mis) / 4
	}
	s := raw[off : off+n : off+c]
	return &s
}

// bigScratch (floats, 1 MiB) is the granularity of fresh buffers larger
// than it: a power of two would nearly double a 1024² conv image (270 MB
// for the 262 M-parameter model's VAE, 540 MB for the real one) and, with
// that, its share of scratchCap.
const bigScratch = 1 << 18

// putBuf returns a buffer from getBuf to the free list.
func putBuf(p *[]float32) {
	c := cap(*p)
	size := 4 * int64(c)
	if c == 0 || size > scratchCap {
		return
	}
	b := bits.Len(uint(c - 1))
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	for scratch.bytes+size > scratchCap {
		dropOldestScratch()
	}
	scratch.seq++
	scratch.free[b] = append(scratch.free[b], scratchBuf{p, scratch.seq})
	scratch.bytes += size
}

// dropOldestScratch forgets the least recently returned buffer. The caller
// holds scratch.mu and scratch.bytes > 0.
func dropOldestScratch() {
	b0 := -1
	for b, l := range scratch.free {
		if len(l) > 0 && (b0 < 0 || l[0].seq < scratch.free[b0][0].seq) {
			b0 = b
		}
	}
	l := scratch.free[b0]
	scratch.bytes -= 4 * int64(cap(*l[0].p))
	l[0] = scratchBuf{}
	scratch.free[b0] = l[1:]
}

// ReserveScratch pre-faults up to n bytes (at most the free list's cap) of
// scratch memory, so that the first GEMMs and convolutions of a request do
// not take page faults inside their timed work. Misses of the free list
// carve their buffers from it (disjoint pieces of one Go slice: the GC
// frees the slab once no piece is referenced, so no piece can be freed
// under a reader). EndScratchReserve ends it.
func ReserveScratch(n int64) {
	floats := min(n, scratchCap) / 4
	if floats <= 0 {
		return
	}
	raw := make([]float32, floats+16)
	for i := 0; i < len(raw); i += 1024 { // a write per page: a read maps the zero page
		raw[i] = 0
	}
	off := 0
	if mis := uintptr(unsafe.Pointer(&raw[0])) & 63; mis != 0 {
		off = int(64-mis) / 4
	}
	scratch.mu.Lock()
	old := scratch.reserve
	scratch.reserve = raw[off : off+int(floats)]
	scratch.mu.Unlock()
	pages.Drop(old)
}

// EndScratchReserve drops what is left of the ReserveScratch slab and hands
// its pages back to the OS (they stay allocated while any piece is used).
func EndScratchReserve() {
	scratch.mu.Lock()
	rest := scratch.reserve
	scratch.reserve = nil
	scratch.mu.Unlock()
	pages.Drop(rest)
}

// TrimScratch drops every kept scratch buffer (the GC frees them).
func TrimScratch() {
	scratch.mu.Lock()
	for b := range scratch.free {
		scratch.free[b] = nil
	}
	scratch.bytes = 0
	scratch.mu.Unlock()
}
