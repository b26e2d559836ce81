package gemm

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Scratch buffers (packed panels, the bf16 conv image) are kept on a free
// list by power-of-two capacity, so a call never takes a buffer too small
// for it. The list is not a sync.Pool: the GC empties those every cycle,
// and with a heap of a few GB that was every few convolutions, each taking a
// fresh image buffer (page faults and kernel zeroing: ~600 MB per 512² VAE
// decode). Rule: at most scratchCap bytes are kept; a buffer that would
// pass it pushes out the least recently returned ones, and a buffer larger
// than the cap is never kept — the sizes in use now stay, those of an
// earlier stage or resolution go.
var scratchCap int64 = 512 << 20

type scratchBuf struct {
	p   *[]float32
	seq uint64
}

var scratch struct {
	mu    sync.Mutex
	free  [48][]scratchBuf // bucket b: capacity 2^b, in return order
	bytes int64
	seq   uint64
}

// getBuf returns a scratch slice of n floats starting on a 64-byte
// boundary (so packed panels never split cache lines). Release it with
// putBuf.
func getBuf(n int) *[]float32 {
	b := bits.Len(uint(max(n, 1) - 1))
	scratch.mu.Lock()
	if l := scratch.free[b]; len(l) > 0 {
		p := l[len(l)-1].p
		l[len(l)-1] = scratchBuf{}
		scratch.free[b] = l[:len(l)-1]
		scratch.bytes -= 4 << b
		scratch.mu.Unlock()
		*p = (*p)[:n]
		return p
	}
	scratch.mu.Unlock()
	raw := make([]float32, 1<<b+16)
	off := 0
	if mis := uintptr(unsafe.Pointer(&raw[0])) & 63; mis != 0 {
		off = int(64-mis) / 4
	}
	s := raw[off : off+n : off+1<<b]
	return &s
}

// putBuf returns a buffer from getBuf to the free list.
func putBuf(p *[]float32) {
	b := bits.Len(uint(cap(*p) - 1))
	size := int64(4) << b
	if 1<<b != cap(*p) || size > scratchCap {
		return
	}
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
	l[0] = scratchBuf{}
	scratch.free[b0] = l[1:]
	scratch.bytes -= 4 << b0
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
