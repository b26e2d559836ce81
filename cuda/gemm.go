package cuda

import (
	"fmt"

	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// blasType returns the cuBLASLt data type of the backend's tensors.
func (b *Backend) blasType() blaslt.DataType {
	if b.dt == weights.F32 {
		return blaslt.R32F
	}
	return blaslt.R16BF
}

// gemm plans (cached) and enqueues one cuBLASLt product. The operands'
// alignments (address, leading dimension and batch stride) are part of the
// plan, so offset pointers into a tensor get an algorithm that accepts them.
func (b *Backend) gemm(s blaslt.Spec, a, bb, d, bias driver.DevicePtr, alpha float32) error {
	es := func(t blaslt.DataType) uint64 {
		if t == blaslt.R32F {
			return 4
		}
		return 2
	}
	ea, eb, ed := es(s.AType), es(s.BType), es(s.DType)
	s.AlignA = blaslt.Align(uint64(a), uint64(s.LDA)*ea, uint64(s.StrideA)*ea)
	s.AlignB = blaslt.Align(uint64(bb), uint64(s.LDB)*eb, uint64(s.StrideB)*eb)
	s.AlignD = blaslt.Align(uint64(d), uint64(s.LDD)*ed, uint64(s.StrideD)*ed)
	p, err := b.d.gemm.Plan(s)
	if err != nil {
		return err
	}
	return b.d.gemm.Run(p, uint64(a), uint64(bb), uint64(d), uint64(bias), alpha, 0, uintptr(b.d.stream))
}

// MatMul returns x·Wᵀ (+ bias): x [M, K], w [N, K], bias [N] or nil.
func (b *Backend) MatMul(x, w, bias compute.Tensor) compute.Tensor {
	const op = "MatMul"
	xs, ws := shapeOf(x), shapeOf(w)
	ph := func() compute.Tensor {
		if len(xs) == 2 && len(ws) == 2 {
			return b.placeholder(xs[0], ws[0])
		}
		return b.placeholder(0, 0)
	}
	if b.failed() {
		return ph()
	}
	tx, tw := b.get(op, x), b.get(op, w)
	if tx == nil || tw == nil {
		return ph()
	}
	if len(tx.shape) != 2 || len(tw.shape) != 2 || tx.shape[1] != tw.shape[1] {
		b.shapeErr(op, "want x [M, K] and w [N, K]", x, w, bias)
		return ph()
	}
	m, k, n := tx.shape[0], tx.shape[1], tw.shape[0]
	var bp driver.DevicePtr
	if bias != nil {
		tb := b.get(op, bias)
		if tb == nil {
			return ph()
		}
		if tb.numel() != n || len(tb.shape) != 1 {
			b.shapeErr(op, fmt.Sprintf("bias must be [%d]", n), x, w, bias)
			return ph()
		}
		bp = tb.ptr
	}
	return b.exec(op, []int{m, n}, func(out *Tensor) error {
		if m == 0 || n == 0 {
			return nil
		}
		if k == 0 {
			return b.fillBias(out, bp, m, n)
		}
		// Column-major view: Yᵀ[N, M] = (W as K×N)ᵀ · (X as K×M), bias along N.
		t := b.blasType()
		s := blaslt.Spec{M: n, N: m, K: k, TransA: true, LDA: k, LDB: k, LDD: n,
			AType: t, BType: t, DType: t, Bias: bp != 0}
		return b.gemm(s, tw.ptr, tx.ptr, out.ptr, bp, 1)
	})
}

// fillBias sets out [m, n] to the bias rows (or zeros).
func (b *Backend) fillBias(out *Tensor, bias driver.DevicePtr, m, n int) error {
	if bias == 0 {
		return b.d.api.Check("cuMemsetD8Async", b.d.api.MemsetD8Async(out.ptr, 0, uint64(m*n*b.esize), b.d.stream))
	}
	return b.copy2d(bias, out.ptr, m, n, 0, n)
}

// colBudget bounds the im2col buffer of one convolution chunk.
var colBudget = 256 << 20

// Conv2D is a stride-1 cross-correlation with zero padding: im2col in chunks
// of output positions, each a cuBLASLt GEMM writing straight into the
// [Co, H'·W'] output, then a per-channel bias.
func (b *Backend) Conv2D(x, w, bias compute.Tensor, pad int) compute.Tensor {
	const op = "Conv2D"
	xs, ws := shapeOf(x), shapeOf(w)
	ph := func() compute.Tensor {
		if len(xs) == 3 && len(ws) == 4 {
			return b.placeholder(ws[0], xs[1]+2*pad-ws[2]+1, xs[2]+2*pad-ws[3]+1)
		}
		return b.placeholder(0, 0, 0)
	}
	if b.failed() {
		return ph()
	}
	tx, tw := b.get(op, x), b.get(op, w)
	if tx == nil || tw == nil {
		return ph()
	}
	if len(tx.shape) != 3 || len(tw.shape) != 4 || tw.shape[1] != tx.shape[0] {
		b.shapeErr(op, "want x [Ci, H, W] and w [Co, Ci, kh, kw]", x, w, bias)
		return ph()
	}
	ci, h, wd := tx.shape[0], tx.shape[1], tx.shape[2]
	co, kh, kw := tw.shape[0], tw.shape[2], tw.shape[3]
	ho, wo := h+2*pad-kh+1, wd+2*pad-kw+1
	if pad < 0 || kh < 1 || kw < 1 || ho < 1 || wo < 1 {
		b.shapeErr(op, fmt.Sprintf("padding %d and a %d×%d kernel leave no output", pad, kh, kw), x, w, bias)
		return ph()
	}
	var bp driver.DevicePtr
	if bias != nil {
		tb := b.get(op, bias)
		if tb == nil {
			return ph()
		}
		if tb.numel() != co || len(tb.shape) != 1 {
			b.shapeErr(op, fmt.Sprintf("bias must be [%d]", co), x, w, bias)
			return ph()
		}
		bp = tb.ptr
	}
	kk := ci * kh * kw
	p := ho * wo
	return b.exec(op, []int{co, ho, wo}, func(out *Tensor) error {
		t := b.blasType()
		if kh == 1 && kw == 1 && pad == 0 {
			// x is already the column matrix [Ci, P].
			s := blaslt.Spec{M: p, N: co, K: ci, LDA: p, LDB: ci, LDD: p, AType: t, BType: t, DType: t}
			if err := b.gemm(s, tx.ptr, tw.ptr, out.ptr, 0, 1); err != nil {
				return err
			}
		} else {
			np := max(1, min(p, colBudget/(kk*b.esize), maxElems/kk))
			col, err := b.d.alloc(uint64(kk * np * b.esize))
			if err != nil {
				return err
			}
			defer b.d.free(col)
			for p0 := 0; p0 < p; p0 += np {
				n := min(np, p-p0)
				err := b.ew(b.k.im2col, kk*n, func(l *launcher) {
					l.p(tx.ptr).p(col).i(ci).i(h).i(wd).i(kh).i(kw).i(pad).i(p0).i(n)
				})
				if err != nil {
					return err
				}
				// Column-major: D[n, Co] (ld P) = col[n, K] (ld n) · W[K, Co] (ld K).
				s := blaslt.Spec{M: n, N: co, K: kk, LDA: n, LDB: kk, LDD: p, AType: t, BType: t, DType: t}
				if err := b.gemm(s, col, tw.ptr, b.off(out, p0), 0, 1); err != nil {
					return err
				}
			}
		}
		if bp == 0 {
			return nil
		}
		return b.ew(b.k.chanBias, co*p, func(l *launcher) { l.p(out.ptr).p(bp).i(co * p).i(p) })
	})
}

// scoreBudget bounds the float32 score matrix of one query chunk of the GEMM
// attention path.
var scoreBudget = 256 << 20

// Attention is scaled-dot-product attention with grouped-query heads and an
// optional causal mask. The bf16 head-size-128 case runs the fused
// tensor-core kernel; everything else goes through cuBLASLt in query chunks:
// S = scale·Q·Kᵀ (float32), a row softmax into P, then O = P·V.
func (b *Backend) Attention(q, k, v compute.Tensor, heads, kvHeads int, scale float32, causal bool) compute.Tensor {
	const op = "Attention"
	qs := shapeOf(q)
	ph := func() compute.Tensor { return b.placeholder(qs...) }
	if b.failed() {
		return ph()
	}
	tq, tk, tv := b.get(op, q), b.get(op, k), b.get(op, v)
	if tq == nil || tk == nil || tv == nil {
		return ph()
	}
	if len(tq.shape) != 2 || len(tk.shape) != 2 || len(tv.shape) != 2 || heads <= 0 || kvHeads <= 0 ||
		heads%kvHeads != 0 || tq.shape[1]%heads != 0 {
		b.shapeErr(op, fmt.Sprintf("want q [Lq, %d·dh], k, v [Lk, %d·dh]", heads, kvHeads), q, k, v)
		return ph()
	}
	lq, lk, dh := tq.shape[0], tk.shape[0], tq.shape[1]/heads
	if tk.shape[1] != kvHeads*dh || tv.shape[1] != kvHeads*dh || tv.shape[0] != lk {
		b.shapeErr(op, fmt.Sprintf("k and v must be [Lk, %d]", kvHeads*dh), q, k, v)
		return ph()
	}
	return b.exec(op, tq.shape, func(out *Tensor) error {
		if lq == 0 || dh == 0 {
			return nil
		}
		if lk == 0 {
			return b.d.api.Check("cuMemsetD8Async", b.d.api.MemsetD8Async(out.ptr, 0, uint64(tq.numel()*b.esize), b.d.stream))
		}
		if b.flash && dh == 128 {
			return b.flashAttention(out, tq, tk, tv, lq, lk, heads, kvHeads, scale, causal)
		}
		return b.gemmAttention(out, tq, tk, tv, lq, lk, dh, heads, kvHeads, scale, causal)
	})
}

func (b *Backend) gemmAttention(out, tq, tk, tv *Tensor, lq, lk, dh, heads, kvHeads int, scale float32, causal bool) error {
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
	cz := 0
	if causal {
		cz = 1
	}
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
			if err := b.softmax(sbuf, pbuf, batch*n, lk, n, i0, cz); err != nil {
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

// flashAttention runs the fused tensor-core kernel (bf16, head size 128).
func (b *Backend) flashAttention(out, tq, tk, tv *Tensor, lq, lk, heads, kvHeads int, scale float32, causal bool) error {
	cz := 0
	if causal {
		cz = 1
	}
	const rowsPerBlock = 64
	b.d.args.reset().p(tq.ptr).p(tk.ptr).p(tv.ptr).p(out.ptr).i(lq).i(lk).i(heads).i(kvHeads).f(scale).i(cz)
	return b.d.launch(b.k.flash, dim3{uint32((lq + rowsPerBlock - 1) / rowsPerBlock), uint32(heads), 1}, dim3{128, 1, 1}, flashSmem)
}

// flashSmem is the flash kernel's dynamic shared memory: Q, K and V tiles
// of 64×128 bf16 (exactly the 48 KiB a launch may use without opting in).
const flashSmem = 3 * 64 * 128 * 2
