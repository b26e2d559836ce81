package cuda

import (
	"fmt"

	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/zimage/compute"
)

// Attention implementations (Options.Attention).
const (
	attnAuto    = iota // tensor-core kernel where one applies, else the generic fused kernel
	attnGemm           // cuBLASLt GEMMs and a row softmax, in query chunks
	attnGeneric        // the generic fused kernel for every head size
)

// Launch contracts of the fused attention kernels (the fake GPU checks the
// same numbers when it emulates the tensor-core ones).
const (
	// flashSmem is the d=128 tensor-core kernel's dynamic shared memory: Q,
	// K and V tiles of 64×128 bf16 (exactly the 48 KiB a launch may use
	// without opting in).
	flashSmem = 3 * 64 * 128 * 2
	// splitRows is the query rows per block of the split-d tensor-core
	// kernels (d = 256, 512): two row groups of 16.
	splitRows = 32
	// genericRows is the query rows per block of the generic kernel.
	genericRows = 16
	// genericChunk is the output dims per block of the generic kernel
	// (larger heads use several blocks along z).
	genericChunk = 512
)

// splitSmem is the dynamic shared memory of the split-d tensor-core kernel
// for head size d: K and V tiles of 32×d bf16 and the partial scores of
// every warp (d/128 slices × 2 row groups × 16×32 float32).
func splitSmem(d int) int { return 2*32*d*2 + (d/128)*2*16*32*4 }

// splitThreads is the block size of the split-d kernel: one warp per
// 128-dim slice and row group.
func splitThreads(d int) int { return 32 * 2 * (d / 128) }

// genericSmem is the generic kernel's dynamic shared memory for head size
// dh: the block's query rows, one staged 32×64 key chunk (row stride 65) and
// the warps' p rows, all float32.
func genericSmem(dh int) int { return 4 * (genericRows*dh + 32*65 + 4*4*32) }

// tcKernelName returns the tensor-core kernel for head size d ("" if none).
func tcKernelName(d int) string {
	switch d {
	case 128, 256, 512:
		return fmt.Sprintf("zk_tc_flash_attn_bf16_d%d", d)
	}
	return ""
}

// setupAttention selects the attention kernels for mode and opts in to the
// shared memory they need; a kernel whose opt-in fails is left out (the
// generic kernel or the GEMM path takes its head sizes).
func (b *Backend) setupAttention(mode int) {
	d := b.d
	b.attn = mode
	b.tc = map[int]*kernel{}
	optin := d.props.MaxSharedOptin
	if optin < 48<<10 {
		optin = 48 << 10
	}
	setSmem := func(k *kernel, bytes int) error {
		return d.Do(func() error {
			return d.api.Check("cuFuncSetAttribute", d.api.FuncSetAttribute(k.fn, driver.FuncAttrMaxDynamicSharedSizeBytes, int32(bytes)))
		})
	}
	if mode == attnGemm {
		return
	}
	if mode == attnAuto {
		for dh, k := range b.k.tc {
			need := flashSmem
			if dh != 128 {
				need = splitSmem(dh)
			}
			if need > optin {
				continue
			}
			// Opt in even at 48 KiB: Hopper reserves 1 KiB per block on top,
			// which the default limit may count.
			if err := setSmem(k, need); err != nil {
				b.log.Warn("cuda: tensor-core attention disabled for a head size", "dh", dh, "err", err)
				continue
			}
			b.tc[dh] = k
		}
	}
	b.flash = len(b.tc) > 0
	// The generic kernel may use up to the device's opt-in limit (or 1 KiB
	// less, should the block's reserved shared memory count against it).
	if b.k.flashGeneric != nil {
		b.genericSmemMax = 48 << 10
		for _, n := range []int{optin, optin - 1<<10} {
			err := setSmem(b.k.flashGeneric, n)
			if err == nil {
				b.genericSmemMax = n
				break
			}
			b.log.Debug("cuda: generic attention shared-memory opt-in refused", "bytes", n, "err", err)
		}
	}
}

// scoreBudget bounds the float32 score matrix of one query chunk of the GEMM
// attention path.
var scoreBudget = 256 << 20

// Attention is scaled-dot-product attention with grouped-query heads and an
// optional causal mask, fused (no [Lq, Lk] matrix): in bf16, head sizes 128,
// 256 and 512 run on tensor cores; every other case runs the generic fused
// kernel (float32 arithmetic). Options.Attention "gemm" selects the cuBLASLt
// path instead (S = scale·Q·Kᵀ in float32, a row softmax, O = P·V, in query
// chunks), which also takes head sizes too large for the generic kernel's
// shared memory.
func (b *Backend) Attention(q, k, v compute.Tensor, heads, kvHeads int, scale float32, causal bool) compute.Tensor {
	const op = "Attention"
	lq, lk, dh, rule := compute.AttentionShape(q, k, v, heads, kvHeads)
	ts, ok := b.operands(op, rule, q, k, v)
	if !ok {
		return b.placeholder(shapeOf(q)...)
	}
	tq, tk, tv := ts[0], ts[1], ts[2]
	if lq > 0 && lk > 0 && dh > 0 && b.attnPath(dh) == "" {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor {
			return c.Attention(in[0], in[1], in[2], heads, kvHeads, scale, causal)
		}, q, k, v)
	}
	return b.exec(op, tq.shape, func(out *Tensor) error {
		if lq == 0 || dh == 0 {
			return nil
		}
		if lk == 0 {
			return b.d.api.Check("cuMemsetD8Async", b.d.api.MemsetD8Async(out.ptr, 0, uint64(tq.numel()*b.esize), b.d.stream))
		}
		cz := 0
		if causal {
			cz = 1
		}
		a := attnArgs{out, tq, tk, tv, lq, lk, dh, heads, kvHeads, scale, cz}
		switch b.attnPath(dh, tq, tk, tv, out) {
		case FamAttnTC128:
			return b.flashAttention(b.tc[dh], a)
		case FamAttnTC256, FamAttnTC512:
			return b.splitAttention(b.tc[dh], a)
		case FamAttnGeneric:
			return b.genericAttention(a)
		}
		return b.gemmAttention(a)
	})
}

// attnArgs are one attention call's operands.
type attnArgs struct {
	out, q, k, v   *Tensor
	lq, lk, dh     int
	heads, kvHeads int
	scale          float32
	causal         int
}

// aligned16 reports whether every tensor starts on a 16-byte boundary (the
// tensor-core kernels copy rows in 16-byte chunks with cp.async).
func aligned16(ts ...*Tensor) bool {
	for _, t := range ts {
		if t.ptr%16 != 0 {
			return false
		}
	}
	return true
}

func (b *Backend) gemmAttention(a attnArgs) error {
	out, tq, tk, tv := a.out, a.q, a.k, a.v
	lq, lk, dh, heads, kvHeads, scale := a.lq, a.lk, a.dh, a.heads, a.kvHeads, a.scale
	grp := heads / kvHeads
	// MHA batches all heads in one strided GEMM; GQA runs head by head (K, V
	// shared by a group would need a zero batch stride).
	batch := 1
	if grp == 1 {
		batch = heads
	}
	bq := max(1, min(lq, scoreBudget/(4*batch*lk), maxElems/(batch*lk)))
	sbuf, err := b.d.alloc(uint64(4 * batch * bq * lk))
	if err != nil {
		return err
	}
	defer b.d.free(sbuf)
	pbuf, err := b.d.alloc(uint64(b.esize * batch * bq * lk))
	if err != nil {
		return err
	}
	defer b.d.free(pbuf)
	t := b.blasType()
	ldq, ldk := heads*dh, kvHeads*dh
	for i0 := 0; i0 < lq; i0 += bq {
		n := min(bq, lq-i0)
		for h := 0; h < heads; h += batch {
			g := h / grp
			qp := b.off(tq, i0*ldq+h*dh)
			kp := b.off(tk, g*dh)
			vp := b.off(tv, g*dh)
			op := b.off(out, i0*ldq+h*dh)
			// Sᵀ[Lk, n] per head = K_g[Lk, dh] · Q_h[n, dh]ᵀ, i.e. row-major S[n, Lk].
			s1 := blaslt.Spec{M: lk, N: n, K: dh, TransA: true, LDA: ldk, LDB: ldq, LDD: lk,
				AType: t, BType: t, DType: blaslt.R32F}
			// Oᵀ[dh, n] = V_g (dh×Lk) · Pᵀ (Lk×n), written with row stride ldq.
			s2 := blaslt.Spec{M: dh, N: n, K: lk, LDA: ldk, LDB: lk, LDD: ldq, AType: t, BType: t, DType: t}
			if batch > 1 {
				s1.Batch, s1.StrideA, s1.StrideB, s1.StrideD = batch, int64(dh), int64(dh), int64(n*lk)
				s2.Batch, s2.StrideA, s2.StrideB, s2.StrideD = batch, int64(dh), int64(n*lk), int64(dh)
			}
			if err := b.gemm(s1, kp, qp, sbuf, 0, scale); err != nil {
				return err
			}
			if err := b.softmax(sbuf, pbuf, batch*n, lk, n, i0, a.causal); err != nil {
				return err
			}
			if err := b.gemm(s2, vp, pbuf, op, 0, 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// softmax normalises rows of float32 scores into P: a warp per row for short
// rows, a block per row for long ones.
func (b *Backend) softmax(s, p driver.DevicePtr, rows, cols, rowsPerBatch, q0, causal int) error {
	if cols <= 1024 {
		wpb := b.d.block / 32
		b.d.args.reset().p(s).p(p).i(rows).i(cols).i(rowsPerBatch).i(q0).i(causal)
		return b.d.launch(b.k.softmaxWarp, dim3{uint32((rows + wpb - 1) / wpb), 1, 1}, b.d.threads(), 0)
	}
	b.d.args.reset().p(s).p(p).i(cols).i(rowsPerBatch).i(q0).i(causal)
	return b.d.launch(b.k.softmax, dim3{uint32(rows), 1, 1}, b.d.threads(), 0)
}

// flashAttention runs the d=128 tensor-core kernel: grid (ceil(Lq/64),
// heads), 4 warps.
func (b *Backend) flashAttention(k *kernel, a attnArgs) error {
	const rowsPerBlock = 64
	b.d.args.reset().p(a.q.ptr).p(a.k.ptr).p(a.v.ptr).p(a.out.ptr).i(a.lq).i(a.lk).i(a.heads).i(a.kvHeads).f(a.scale).i(a.causal)
	return b.d.launch(k, dim3{uint32((a.lq + rowsPerBlock - 1) / rowsPerBlock), uint32(a.heads), 1}, dim3{128, 1, 1}, flashSmem)
}

// splitAttention runs the split-d tensor-core kernel (d = 256, 512): grid
// (ceil(Lq/32), heads), two warps per 128-dim slice.
func (b *Backend) splitAttention(k *kernel, a attnArgs) error {
	b.d.args.reset().p(a.q.ptr).p(a.k.ptr).p(a.v.ptr).p(a.out.ptr).i(a.lq).i(a.lk).i(a.heads).i(a.kvHeads).f(a.scale).i(a.causal)
	return b.d.launch(k, dim3{uint32((a.lq + splitRows - 1) / splitRows), uint32(a.heads), 1},
		dim3{uint32(splitThreads(a.dh)), 1, 1}, uint32(splitSmem(a.dh)))
}

// genericAttention runs the generic fused kernel: grid (ceil(Lq/16), heads,
// ceil(dh/512)), 4 warps.
func (b *Backend) genericAttention(a attnArgs) error {
	b.d.args.reset().p(a.q.ptr).p(a.k.ptr).p(a.v.ptr).p(a.out.ptr).i(a.lq).i(a.lk).i(a.heads).i(a.kvHeads).i(a.dh).f(a.scale).i(a.causal)
	grid := dim3{uint32((a.lq + genericRows - 1) / genericRows), uint32(a.heads), uint32((a.dh + genericChunk - 1) / genericChunk)}
	return b.d.launch(b.k.flashGeneric, grid, dim3{128, 1, 1}, uint32(genericSmem(a.dh)))
}

// attnPath picks the attention family for head size dh, given the operands
// (none: before the output exists, alignment is not checked): a tensor-core
// kernel when one applies and is enabled, else the generic kernel when it
// is enabled and its shared memory fits, else the GEMM path when enabled;
// "" means the host fallback.
func (b *Backend) attnPath(dh int, ts ...*Tensor) Family {
	if f := tcFamily(dh); b.tc[dh] != nil && b.on(f) && aligned16(ts...) {
		return f
	}
	if b.attn != attnGemm && b.k.flashGeneric != nil && genericSmem(dh) <= b.genericSmemMax && b.on(FamAttnGeneric) {
		return FamAttnGeneric
	}
	if b.on(FamAttnGemm) {
		return FamAttnGemm
	}
	return ""
}
