package cpu

import (
	"context"

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
