package cpu

import (
	"context"
	"fmt"
	"sync"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Pre-packed weights (bf16 mode). The bf16 GEMM packs its weight into the
// kernel's pair panels on every call; a weight the DiT uses every step is
// instead packed once (gemm.PackBF16) and kept on its handle, within a byte
// budget. Policy: a weight is packed on its packAfter-th product with more
// than a few rows (gemm.PackHelps) within one request (SetContext), so the
// text encoder, which runs once per prompt — twice per request with CFG's
// negative prompt — and the VAE are never packed, while the DiT's weights
// are from its third step on (second with CFG) and stay packed across
// requests. Products with packed weights equal the unpacked ones bit for
// bit. A pack is dropped when its handle is freed (a LoRA merge binds new
// handles over new bytes, after the old ones are freed) and on Close.
//
// The packs come on top of the checkpoint's mapped pages, which stay
// mapped (the GEMV, LoRA merges and a CUDA upload read them); their page
// cache is clean and reclaimable once the packs are in use.

// packAfter is the product (with m > gemv rows) within one request at which
// a weight is packed.
const packAfter = 3

// WithPackBudget bounds the memory held by pre-packed bf16 weights (see
// above): 0 disables packing, a negative n selects the default, a quarter
// of the machine's physical memory (2 GiB where it is unknown) — enough
// for the medium and the 6B model's most used weights (its DiT is 12.3 GB
// of bf16, packed the same size) without doubling its footprint on a
// small machine.
func WithPackBudget(n int64) Option {
	return func(b *Backend) { b.packs.budget = n }
}

// defaultPackBudget is WithPackBudget's default.
func defaultPackBudget() int64 {
	if m := physicalMemory(); m > 0 {
		return int64(m / 4)
	}
	return 2 << 30
}

// packCache tracks the backend's packed weights.
type packCache struct {
	mu     sync.Mutex
	budget int64 // bytes; 0: off
	used   int64
	epoch  uint64               // SetContext calls: uses are counted per request
	held   map[*Tensor]struct{} // handles holding a pack
}

// PackedBytes returns the memory held by pre-packed weights.
func (b *Backend) PackedBytes() int64 {
	b.packs.mu.Lock()
	defer b.packs.mu.Unlock()
	return b.packs.used
}

// newRequest starts a new count of uses (SetContext).
func (c *packCache) newRequest() {
	c.mu.Lock()
	c.epoch++
	c.mu.Unlock()
}

// packable reports whether w's products in bf16 mode can use a pack.
func packable(w *Tensor) bool {
	if w.w == nil || w.f32 != nil || len(w.shape) != 2 {
		return false
	}
	switch w.w.DType {
	case weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2:
		return true
	}
	return false
}

// packFor returns w's pack for a bf16 product with m rows, packing it when
// this use is the packAfter-th of the request and the budget allows; nil
// when the product runs unpacked.
func (b *Backend) packFor(ctx context.Context, w *Tensor, m int) (*gemm.BF16Packed, error) {
	if !b.bf16 || !gemm.PackHelps(m) || !packable(w) {
		return nil, nil
	}
	c := &b.packs
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.pk != nil || c.budget == 0 {
		return w.pk, nil
	}
	if w.pkEpoch != c.epoch {
		w.pkEpoch, w.pkUses = c.epoch, 0
	}
	if w.pkUses++; w.pkUses < packAfter {
		return nil, nil
	}
	n, k := w.shape[0], w.shape[1]
	size := gemm.PackedBF16Bytes(n, k)
	if c.used+size > c.budget {
		return nil, nil
	}
	p, err := gemm.PackBF16Ctx(ctx, w.w.Data, w.w.DType, n, k)
	if err != nil {
		return nil, fmt.Errorf("packing %q: %w", w.w.Name, err)
	}
	w.pk = p
	c.used += p.Bytes()
	if c.held == nil {
		c.held = map[*Tensor]struct{}{}
	}
	c.held[w] = struct{}{}
	return p, nil
}

// packed returns w's pack when a bf16 product with m rows uses it, or nil.
func (b *Backend) packed(w *Tensor, m int) *gemm.BF16Packed {
	if !b.bf16 || !gemm.PackHelps(m) {
		return nil
	}
	b.packs.mu.Lock()
	defer b.packs.mu.Unlock()
	return w.pk
}

// dropPack frees w's pack, if any.
func (b *Backend) dropPack(w *Tensor) {
	c := &b.packs
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.pk == nil {
		return
	}
	c.used -= w.pk.Bytes()
	w.pk = nil
	delete(c.held, w)
}

// Close frees every pre-packed weight; the backend stays usable (weights
// are packed again when used again).
func (b *Backend) Close() error {
	c := &b.packs
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.held {
		w.pk = nil
	}
	c.held, c.used = nil, 0
	return nil
}

var _ compute.MatMulSharer = (*Backend)(nil)

// MatMulShared returns x·wᵢᵀ for every wᵢ (compute.MatMulSharer). In bf16
// mode, when every weight is packed, the products run as one
// gemm.MatMulBTBF16MultiCtx (x packed once, one parallel region); otherwise
// each is a MatMul. Every result equals MatMul(x, wᵢ, nil) bit for bit.
func (b *Backend) MatMulShared(x compute.Tensor, ws ...compute.Tensor) []compute.Tensor {
	const op = "MatMulShared"
	out := make([]compute.Tensor, len(ws))
	separate := func() []compute.Tensor {
		for i, w := range ws {
			out[i] = b.MatMul(x, w, nil)
		}
		return out
	}
	if !b.bf16 || len(ws) < 2 {
		return separate()
	}
	ts, ok := b.operands(op, nil, append([]compute.Tensor{x}, ws...)...)
	if !ok {
		return separate() // placeholders, with the error recorded
	}
	tx := ts[0]
	if len(tx.shape) != 2 || tx.w != nil {
		return separate()
	}
	m, k := tx.shape[0], tx.shape[1]
	cw := b.current()
	ps := make([]*gemm.BF16Packed, len(ws))
	for i, tw := range ts[1:] {
		if len(tw.shape) != 2 || tw.shape[1] != k {
			return separate() // MatMul reports the shape error
		}
		// Only weights already packed: MatMul counts the uses that pack them.
		p := b.packed(tw, m)
		if p == nil {
			return separate()
		}
		ps[i] = p
	}
	xv := b.values(op, tx)
	if xv == nil {
		return separate()
	}
	cs := make([][]float32, len(ws))
	for i, p := range ps {
		t := b.newTensor(m, p.N())
		out[i], cs[i] = t, t.data
	}
	if err := gemm.MatMulBTBF16MultiCtx(cw.context(), cs, xv, ps, nil, m, k); err != nil {
		b.opErr(op, cw, err)
		for i, t := range out {
			b.Free(t)
			out[i] = b.placeholder(m, ps[i].N())
		}
	}
	return out
}
