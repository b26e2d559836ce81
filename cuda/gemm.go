package cuda

import (
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
	shape, rule := compute.MatMulShape(x, w, bias)
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return b.placeholder(shape...)
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	m, k, n := tx.shape[0], tx.shape[1], tw.shape[0]
	var bp driver.DevicePtr
	if tb != nil {
		bp = tb.ptr
	}
	return b.exec(op, []int{m, n}, func(out *Tensor) error {
		if m == 0 || n == 0 {
			return nil
		}
		if k == 0 {
			return b.fillBias(out, bp, m, n)
		}
		wp := tw.ptr
		if tw.dt.IsQuantized() { // expanded into the scratch first (quant.go)
			var err error
			if wp, err = b.quantScratch(uint64(n * k * b.esize)); err != nil {
				return err
			}
			if err := b.dequant(tw.dt, tw.ptr, wp, n*k); err != nil {
				return err
			}
		}
		// Column-major view: Yᵀ[N, M] = (W as K×N)ᵀ · (X as K×M), bias along N.
		t := b.blasType()
		s := blaslt.Spec{M: n, N: m, K: k, TransA: true, LDA: k, LDB: k, LDD: n,
			AType: t, BType: t, DType: t, Bias: bp != 0}
		return b.gemm(s, wp, tx.ptr, out.ptr, bp, 1)
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
//
// Cost of im2col (kept on purpose): a
// 3×3 conv writes its 9·Ci·H·W column matrix and the GEMM reads it back, at
// least 36·Ci·H·W bytes in bf16 beyond the conv's own input and output. For
// the VAE decoder at 1024² (spec §2.4: 10 convs with Ci=512 at 128², 7 at
// 256², 2 with Ci=512 and 5 with Ci=256 at 512², 2 with Ci=256 and 6 with
// Ci=128 at 1024²) that is ≈ 82 GB of extra memory traffic: ≈ 24 ms at
// H100's 3.35 TB/s (≈ 17 ms on H200), next to the decoder's ≈ 13 ms compute
// bound (spec §6.6), i.e. the decode takes roughly twice its bound — a few
// percent of a 1024² image. An implicit-GEMM kernel (input tiles with a halo
// in shared memory, mma.sync) would remove it; cuBLASLt cannot express the
// 9 shifted input views as one operand, and per-tap GEMMs accumulating into
// the output move about as many bytes as im2col does.
func (b *Backend) Conv2D(x, w, bias compute.Tensor, pad int) compute.Tensor {
	const op = "Conv2D"
	if !b.on(FamConv) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Conv2D(in[0], in[1], in[2], pad) }, x, w, bias)
	}
	shape, rule := compute.Conv2DShape(x, w, bias, pad)
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return b.placeholder(shape...)
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	ci, h, wd := tx.shape[0], tx.shape[1], tx.shape[2]
	co, kh, kw := tw.shape[0], tw.shape[2], tw.shape[3]
	ho, wo := shape[1], shape[2]
	var bp driver.DevicePtr
	if tb != nil {
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
