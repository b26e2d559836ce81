package cpu

import (
	"github.com/zimage/zimage/internal/pages"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Reserve pre-faults activation memory for the next request, so that the
// page faults and kernel zeroing of its fresh buffers (~0.4 ms per MB on
// the VMs measured: ~70 ms of a first 256² generation, ~280 ms at 512²)
// happen now — at load, outside the timed stages — instead of inside the
// ops that first write them.
//
// The reserve is one Go slice of up to n bytes (at most the pool cap,
// WithPoolBytes), written once per page. An alloc that finds no pooled
// buffer takes the next piece of it (a full slice expression, so pieces
// never overlap; each is an ordinary buffer afterwards, released to the
// pool like any other). The GC owns the slab: it lives while any piece
// does, and nothing is ever unmapped, so no piece can be freed under a
// reader. TrimToCap and Trim end the reserve and hand the pages of its
// unused tail back to the OS (madvise, Linux), since that tail stays
// allocated as long as a piece is pooled.
//
// A quarter of n more goes to the GEMM scratch (gemm.ReserveScratch): the
// bf16 conv images, about half of a conv's input each, are most of a
// generation's fresh scratch (~200 MB for a first 512² VAE decode).
func (b *Backend) Reserve(n int64) {
	floats := min(n, b.poolCap) / 4
	if floats <= 0 {
		return
	}
	slab := make([]float32, floats)
	// Write one value per 4 KiB page: a read would map the shared zero page.
	for i := 0; i < len(slab); i += 1024 {
		slab[i] = 0
	}
	b.bufMu.Lock()
	old := b.reserve
	b.reserve = slab
	b.bufMu.Unlock()
	pages.Drop(old)
	gemm.ReserveScratch(n / 4)
}

// fromReserve carves n floats off the reserve, or returns nil when it has
// fewer. Pieces are rounded up to 16 floats so every piece starts 64-byte
// aligned when the slab does. The caller holds bufMu.
func (b *Backend) fromReserve(n int) []float32 {
	r := b.reserve
	if len(r) < n {
		return nil
	}
	k := min(len(r), (n+15)&^15)
	b.reserve = r[k:]
	return r[:n:k]
}

// endReserve drops the rest of the reserves (this backend's and the GEMM
// scratch's) and hands their pages back to the OS.
func (b *Backend) endReserve() {
	b.bufMu.Lock()
	rest := b.reserve
	b.reserve = nil
	b.bufMu.Unlock()
	pages.Drop(rest)
	gemm.EndScratchReserve()
}

// SetEagerConvWeights says whether Weight expands small convolution
// kernels (4-D, larger than 1×1, float32 expansion within the cache limit)
// to their cached float32 values at once, as their first Conv2D would.
// The pipeline's warm-up turns it on while it binds the VAE at Load, so
// the first decode does not pay the conversion (~14 MB of bf16 kernels for
// the 262 M-parameter model's VAE). The values are the ones the lazy path
// caches, so results are unchanged. 1×1 kernels are left lazy: a reshaped
// one could reach MatMul, which picks its path by whether a cache exists.
func (b *Backend) SetEagerConvWeights(on bool) {
	b.bufMu.Lock()
	b.eager = on
	b.bufMu.Unlock()
}

// eagerExpand fills a new weight handle's float32 cache under
// SetEagerConvWeights.
func (b *Backend) eagerExpand(t *Tensor) {
	b.bufMu.Lock()
	on := b.eager
	b.bufMu.Unlock()
	if !on || len(t.shape) != 4 || t.shape[2]*t.shape[3] <= 1 || 4*t.numel() > cacheLimit {
		return
	}
	if v, err := decode(t.w, 0, t.numel()); err == nil { // an error is left to the op
		t.f32 = v
	}
}

// ReservedBytes is the size of the reserve not handed out yet.
func (b *Backend) ReservedBytes() int64 {
	b.bufMu.Lock()
	defer b.bufMu.Unlock()
	return 4 * int64(len(b.reserve))
}
