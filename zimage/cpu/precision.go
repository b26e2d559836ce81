package cpu

import (
	"context"
	"fmt"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// WithBF16 makes the backend compute the large matrix products in bfloat16
// with float32 accumulation (gemm.MatMulBTBF16: activations rounded to bf16
// while packed, VDPBF16PS where the CPU has AVX512-BF16), and attention's
// QKᵀ and PV likewise. Norms, softmax, RoPE, the residual stream and every
// other op stay float32. The default (false) is exact float32.
func WithBF16(on bool) Option {
	return func(b *Backend) { b.bf16 = on }
}

// BF16 reports whether the backend computes its matrix products in
// bfloat16 (WithBF16).
func (b *Backend) BF16() bool { return b.bf16 }

// SetBF16 switches WithBF16 on an existing backend (benchmarks compare both
// precisions on one set of weights). Call it between ops, never while an op
// runs.
func (b *Backend) SetBF16(on bool) { b.bf16 = on }

// matMulN is gemm.MatMulCtx (B [k, n] float32), in bf16 when WithBF16.
func (b *Backend) matMulN(ctx context.Context, c, a, bm []float32, m, n, k int) error {
	if b.bf16 {
		return gemm.MatMulBF16Ctx(ctx, c, a, bm, m, n, k)
	}
	return gemm.MatMulCtx(ctx, c, a, bm, m, n, k)
}

// MatMulQ80 returns x·Wᵀ (+ bias) for a weight W [n, K] given as Q8_0
// blocks (ggml block_q8_0: float16 scale + 32 int8, row by row), computed
// by gemm.MatMulBTQ80 (activations quantized per 32-block, VPDPBUSD where
// the CPU has AVX512-VNNI). It is the engine for Q8_0 checkpoint weights;
// benchmarks call it directly.
func (b *Backend) MatMulQ80(x compute.Tensor, w []byte, n int, bias compute.Tensor) compute.Tensor {
	return b.matMulQ80("MatMulQ80", x, n, bias, func(ctx context.Context, c, a, bias []float32, m, k int) error {
		return gemm.MatMulBTQ80Ctx(ctx, c, a, w, bias, m, n, k)
	})
}

// MatMulQ80Packed is MatMulQ80 with W repacked once by gemm.PackQ80 (no
// packing per product: how weights used every step should be held).
func (b *Backend) MatMulQ80Packed(x compute.Tensor, w *gemm.Q80Packed, bias compute.Tensor) compute.Tensor {
	return b.matMulQ80("MatMulQ80Packed", x, w.N(), bias, func(ctx context.Context, c, a, bias []float32, m, k int) error {
		if k != w.K() {
			return fmt.Errorf("x has %d columns, the packed weight %d", k, w.K())
		}
		return gemm.MatMulBTQ80PackedCtx(ctx, c, a, w, bias, m)
	})
}

func (b *Backend) matMulQ80(op string, x compute.Tensor, n int, bias compute.Tensor, mm func(ctx context.Context, c, a, bias []float32, m, k int) error) compute.Tensor {
	xs := shapeOf(x)
	if len(xs) != 2 || n < 0 {
		b.setErr(fmt.Errorf("cpu: %s: x must be [M, K] (got %v), n ≥ 0 (got %d)", op, xs, n))
		return b.placeholder(0, max(n, 0))
	}
	ts, ok := b.operands(op, nil, x, bias)
	if !ok {
		return b.placeholder(xs[0], n)
	}
	m, k := ts[0].shape[0], ts[0].shape[1]
	xv := b.values(op, ts[0])
	bv, okb := b.optValues(op, ts[1])
	if xv == nil || !okb {
		return b.placeholder(m, n)
	}
	out := b.newTensor(m, n)
	cw := b.current()
	if err := mm(cw.context(), out.data, xv, bv, m, k); err != nil {
		b.opErr(op, cw, err)
		b.Free(out)
		return b.placeholder(m, n)
	}
	return out
}
