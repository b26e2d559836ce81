package cpu

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Pre-packed weights (bf16 mode). The bf16 GEMM packs its weight into the
// kernel's pair panels on every call; a weight the DiT uses every step is
// instead packed once (gemm.PackBF16) and kept on its handle, within a byte
// budget. Policy: a weight is packed on its packAfter-th product with more
// than a few rows (gemm.PackHelps) within one request (SetContext) once it
// was used in an earlier request, or on its packFirst-th in its first one.
// So the text encoder, which runs once per prompt — twice per request with
// CFG's negative prompt — and the VAE are never packed, while the DiT's
// weights are from the third step of a second request on (second step with
// CFG) and stay packed across requests. A first request packs only when it
// runs long enough to repay the pack's fresh memory: on the 2-vCPU Zen 4
// VM measured, faulting in a pack costs about what 7 per-call packings of
// the same weight do (~1.7 µs per 4 KiB page vs ~0.06 ns per byte), and a
// one-shot 8-step generation at 256² packing from its third step used the
// same user CPU as one that never packed, plus the faults' system time.
// Products with packed weights equal the unpacked ones bit for bit. A pack
// belongs to its handle: it is dropped when the handle is freed
// (the DiT frees its handles when released) and on Close; weights change only
// by binding new handles (a LoRA merge's copies are new tensors), so a pack
// never outlives its bytes. A handle dropped without Free keeps its pack
// until Close.
//
// The checkpoint stays mapped (the GEMV, LoRA merges and a CUDA upload
// read it); on Linux the pages of a packed weight are dropped from the
// resident set (weights.DropMapped), so the process does not hold the DiT twice:
// they fault in again from the page cache if read.

// packAfter is the product (with m > gemv rows) within one request at which
// a weight used in an earlier request is packed; packFirst the one at which
// a weight is packed in the first request that uses it (past the 8 steps of
// a Turbo generation, near the break-even point).
const (
	packAfter = 3
	packFirst = 10
)

// WithPackBudget bounds the memory held by pre-packed weights (see above):
// 0 disables packing, a negative n selects the default, a quarter of the
// machine's physical memory or of the container's (cgroup) limit when
// lower (2 GiB where neither is known). Packs are the process's own memory,
// which the OS cannot reclaim as it can the mapped checkpoint's page cache:
// the 6B model's DiT is 12.3 GB of bf16, packed the same size, so on a
// machine under 50 GB the default packs only part of it (the weights used
// first), and a small machine keeps its headroom.
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

// PackedWeights returns the names of the weights held pre-packed, sorted.
func (b *Backend) PackedWeights() []string {
	b.packs.mu.Lock()
	defer b.packs.mu.Unlock()
	names := make([]string, 0, len(b.packs.held))
	for w := range b.packs.held {
		names = append(names, w.w.Name)
	}
	slices.Sort(names)
	return names
}

// newRequest starts a new count of uses (SetContext).
func (c *packCache) newRequest() {
	c.mu.Lock()
	c.epoch++
	c.mu.Unlock()
}

// weightPack is a weight's pre-packed form: bf16 pair panels for the bf16
// GEMM (F32/BF16/F16/F8 weights) or Q8_0 panels for the VPDPBUSD GEMM.
type weightPack struct {
	bf *gemm.BF16Packed
	q8 *gemm.Q80Packed
}

func (p *weightPack) bytes() int64 {
	if p.bf != nil {
		return p.bf.Bytes()
	}
	return p.q8.Bytes()
}

// packKind is how w's bf16-mode products with many rows can use a pack:
// "bf16", "q8" (Q8_0 weights where the CPU has the int8 dot product, the
// engine MatMul picks for them), or "" (none).
func packKind(w *Tensor) string {
	if w.w == nil || w.f32 != nil || len(w.shape) != 2 {
		return ""
	}
	switch w.w.DType {
	case weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2:
		return "bf16"
	case weights.Q8_0:
		if gemm.HasQ8Dot() && w.shape[1]%32 == 0 {
			return "q8"
		}
	}
	return ""
}

// packFor returns w's pack for a bf16-mode product with m rows, packing it
// when this use is the packAfter-th of the request (packFirst-th of its
// first request) and the budget allows;
// nil when the product runs unpacked.
func (b *Backend) packFor(ctx context.Context, w *Tensor, m int) (*weightPack, error) {
	if !b.bf16 || !gemm.PackHelps(m) {
		return nil, nil
	}
	kind := packKind(w)
	if kind == "" {
		return nil, nil
	}
	c := &b.packs
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.pk != nil || c.budget == 0 {
		return w.pk, nil
	}
	if w.pkEpoch != c.epoch {
		w.pkSeen = w.pkSeen || w.pkUses > 0 // used in an earlier request
		w.pkEpoch, w.pkUses = c.epoch, 0
	}
	if w.pkUses++; w.pkUses < packAfter || !w.pkSeen && w.pkUses < packFirst {
		return nil, nil
	}
	return b.packLocked(ctx, w, kind)
}

// Prepack packs the weights ws now, as their packAfter-th product in a
// later request would (bf16 mode only, within the budget; a weight that
// cannot be packed is skipped), so that a first request pays neither the packing nor
// its fresh memory (zimage.WithWarmup calls it at Load with the DiT's
// per-token weights).
func (b *Backend) Prepack(ctx context.Context, ws ...compute.Tensor) error {
	if !b.bf16 {
		return nil
	}
	for _, t := range ws {
		w, ok := t.(*Tensor)
		if !ok || w == nil {
			continue
		}
		kind := packKind(w)
		if kind == "" {
			continue
		}
		b.packs.mu.Lock()
		var err error
		if w.pk == nil && b.packs.budget != 0 {
			_, err = b.packLocked(ctx, w, kind)
		}
		b.packs.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// packLocked packs w as kind within the budget (nil when it does not fit).
// The caller holds b.packs.mu.
func (b *Backend) packLocked(ctx context.Context, w *Tensor, kind string) (*weightPack, error) {
	c := &b.packs
	n, k := w.shape[0], w.shape[1]
	size := gemm.PackedBF16Bytes(n, k)
	if kind == "q8" {
		size = gemm.PackedQ80Bytes(n, k)
	}
	if c.used+size > c.budget {
		return nil, nil
	}
	p := &weightPack{}
	var err error
	if kind == "q8" {
		p.q8, err = gemm.PackQ80(w.w.Data, n, k)
	} else {
		p.bf, err = gemm.PackBF16Ctx(ctx, w.w.Data, w.w.DType, n, k)
	}
	if err != nil {
		return nil, fmt.Errorf("packing %q: %w", w.w.Name, err)
	}
	w.pk = p
	c.used += p.bytes()
	weights.DropMapped(w.w.Data)
	if c.held == nil {
		c.held = map[*Tensor]struct{}{}
	}
	c.held[w] = struct{}{}
	return p, nil
}

// packed returns w's pack when a bf16-mode product with m rows uses it, or
// nil.
func (b *Backend) packed(w *Tensor, m int) *weightPack {
	if !b.bf16 || !gemm.PackHelps(m) {
		return nil
	}
	b.packs.mu.Lock()
	defer b.packs.mu.Unlock()
	if w.pk != nil && w.pk.q8 != nil && m < gemm.Q80UnpackedMinRows {
		return nil // such products take the bf16 path, packed or not (MatMul)
	}
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
	c.used -= w.pk.bytes()
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
// mode the products run as one gemm.MatMulBTBF16MultiCtx (x packed once,
// one parallel region) when every weight takes the bf16 GEMM — pre-packed
// or not (gemm.RawBF16: packed per task, as MatMul would) — or as one
// gemm.MatMulBTQ80PackedMultiCtx when every weight is a packed Q8_0;
// otherwise each is a MatMul. Uses are counted (and weights packed) as
// MatMul does. Every result equals MatMul(x, wᵢ, nil) bit for bit.
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
	if kq, ok := b.sharedKQuant(tx, ts[1:], m, k); ok {
		return kq
	}
	ps := make([]*weightPack, len(ws))
	bf, packed := gemm.PackHelps(m), true // every weight takes the bf16 GEMM; is packed
	for i, tw := range ts[1:] {
		if len(tw.shape) != 2 || tw.shape[1] != k {
			return separate() // MatMul reports the shape error
		}
		bf = bf && packKind(tw) == "bf16"
		ps[i] = b.packed(tw, m)
		packed = packed && ps[i] != nil && (ps[i].bf == nil) == (ps[0].bf == nil)
	}
	fail := func(err error) []compute.Tensor { // err nil: already recorded
		if err != nil {
			b.opErr(op, cw, err)
		}
		for i, tw := range ts[1:] {
			if out[i] != nil {
				b.Free(out[i])
			}
			out[i] = b.placeholder(m, tw.shape[0])
		}
		return out
	}
	if !packed {
		if !bf {
			return separate() // MatMul counts the uses that pack them
		}
		for i, tw := range ts[1:] {
			var err error
			if ps[i], err = b.packFor(cw.context(), tw, m); err != nil {
				return fail(err)
			}
		}
	}
	xv := b.values(op, tx)
	if xv == nil {
		return fail(nil)
	}
	var bps []*gemm.BF16Packed
	if bf || ps[0].bf != nil {
		bps = make([]*gemm.BF16Packed, len(ps))
		for i, tw := range ts[1:] {
			if ps[i] != nil {
				bps[i] = ps[i].bf
				continue
			}
			var err error
			if bps[i], err = gemm.RawBF16(tw.w.Data, tw.w.DType, tw.shape[0], k); err != nil {
				return fail(err)
			}
		}
	}
	cs := make([][]float32, len(ws))
	for i, tw := range ts[1:] {
		t := b.newTensor(m, tw.shape[0])
		out[i], cs[i] = t, t.data
	}
	var err error
	if bps != nil {
		err = gemm.MatMulBTBF16MultiCtx(cw.context(), cs, xv, bps, nil, m, k)
	} else {
		qps := make([]*gemm.Q80Packed, len(ps))
		for i, p := range ps {
			qps[i] = p.q8
		}
		err = gemm.MatMulBTQ80PackedMultiCtx(cw.context(), cs, xv, qps, nil, m)
	}
	if err != nil {
		return fail(err)
	}
	return out
}

// MatMulQ80PackedShared is MatMulQ80Packed of x with several weights in one
// pass (gemm.MatMulBTQ80PackedMultiCtx: x quantized once); each result
// equals MatMulQ80Packed(x, ws[i], nil) bit for bit.
func (b *Backend) MatMulQ80PackedShared(x compute.Tensor, ws ...*gemm.Q80Packed) []compute.Tensor {
	const op = "MatMulQ80PackedShared"
	out := make([]compute.Tensor, len(ws))
	ph := func() []compute.Tensor {
		m := 0
		if xs := shapeOf(x); len(xs) == 2 {
			m = xs[0]
		}
		for i, w := range ws {
			out[i] = b.placeholder(m, w.N())
		}
		return out
	}
	xs := shapeOf(x)
	if len(xs) != 2 || len(ws) == 0 {
		b.setErr(fmt.Errorf("cpu: %s: x must be [M, K] (got %v) and at least one weight", op, xs))
		return ph()
	}
	ts, ok := b.operands(op, nil, x)
	if !ok {
		return ph()
	}
	m, k := ts[0].shape[0], ts[0].shape[1]
	for i, w := range ws {
		if w.K() != k {
			b.setErr(fmt.Errorf("cpu: %s: x has %d columns, packed weight %d has %d", op, k, i, w.K()))
			return ph()
		}
	}
	xv := b.values(op, ts[0])
	if xv == nil {
		return ph()
	}
	cs := make([][]float32, len(ws))
	for i, w := range ws {
		t := b.newTensor(m, w.N())
		out[i], cs[i] = t, t.data
	}
	cw := b.current()
	if err := gemm.MatMulBTQ80PackedMultiCtx(cw.context(), cs, xv, ws, nil, m); err != nil {
		b.opErr(op, cw, err)
		b.Free(out...)
		return ph()
	}
	return out
}

// sharedKQuant runs MatMulShared's products as one
// gemm.MatMulBTKQuantMultiCtx (x quantized once) when every weight is of
// the same K-quant type that MatMul sends to the int8 path; ok is false
// otherwise. Each result equals MatMul(x, wᵢ, nil) bit for bit.
func (b *Backend) sharedKQuant(tx *Tensor, ws []*Tensor, m, k int) (out []compute.Tensor, ok bool) {
	const op = "MatMulShared"
	if !b.bf16 {
		return nil, false
	}
	var dt weights.DType
	data := make([][]byte, len(ws))
	for i, tw := range ws {
		if tw.w == nil || tw.f32 != nil || len(tw.shape) != 2 || tw.shape[1] != k || !gemm.KQuantDot(tw.w.DType, m) ||
			(i > 0 && tw.w.DType != dt) {
			return nil, false
		}
		dt, data[i] = tw.w.DType, tw.w.Data
	}
	cw := b.current()
	out = make([]compute.Tensor, len(ws))
	xv := b.values(op, tx)
	if xv == nil {
		for i, tw := range ws {
			out[i] = b.placeholder(m, tw.shape[0])
		}
		return out, true
	}
	cs := make([][]float32, len(ws))
	for i, tw := range ws {
		t := b.newTensor(m, tw.shape[0])
		out[i], cs[i] = t, t.data
	}
	if err := gemm.MatMulBTKQuantMultiCtx(cw.context(), cs, xv, data, dt, m, k); err != nil {
		b.opErr(op, cw, err)
		for i, tw := range ws {
			b.Free(out[i])
			out[i] = b.placeholder(m, tw.shape[0])
		}
	}
	return out, true
}
