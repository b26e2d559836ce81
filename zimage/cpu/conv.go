package cpu

import (
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// colBudget bounds the im2col buffer of one strided-conv tile (bytes).
var colBudget = 64 << 20 // a variable so tests can force tiling

// Conv2D is a stride-1 cross-correlation with zero padding pad:
// x [Ci, H, W], w [Co, Ci, kh, kw], bias [Co] or nil → [Co, H', W'].
//
// A 1×1 kernel without padding is one GEMM on the input as it is. Otherwise
// it is one GEMM W[Co, K]·im2col(x) whose B panels gemm.ConvCtx packs
// straight from x (no column buffer; the kernel is widened to float32 once
// per call). With WithBF16 the GEMMs run in bf16, the large 3×3 ones as
// Winograd F(2×2, 3×3) (gemm.SetWinograd).
func (b *Backend) Conv2D(x, w, bias compute.Tensor, pad int) compute.Tensor {
	return b.conv2D("Conv2D", x, w, bias, pad, false)
}

// conv2D is Conv2D, on the nearest 2× upsampling of x when up (which the
// GEMM reads in place: gemm.ConvUp2BiasCtx).
func (b *Backend) conv2D(op string, x, w, bias compute.Tensor, pad int, up bool) compute.Tensor {
	var geom compute.Tensor = x
	if up {
		s := shapeOf(x)
		geom = shapeOnly{s[0], 2 * s[1], 2 * s[2]} // the caller checked len(s) == 3
	}
	shape, rule := compute.Conv2DShape(geom, w, bias, pad)
	ph := func() compute.Tensor { return b.placeholder(shape...) }
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return ph()
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	ci, h, wd := tx.shape[0], tx.shape[1], tx.shape[2]
	co, kh, kw := tw.shape[0], tw.shape[2], tw.shape[3]
	ho, wo := shape[1], shape[2]
	var bv []float32
	if tb != nil {
		if bv = b.values(op, tb); bv == nil {
			return ph()
		}
	}
	xv := b.values(op, tx)
	wv, done := b.tempValues(op, tw)
	defer done()
	if xv == nil || wv == nil {
		return ph()
	}
	out := b.newTensor(co, ho, wo)
	cw := b.current()
	ctx := cw.context()
	fail := func(err error) compute.Tensor {
		b.opErr(op, cw, err)
		b.Free(out)
		return ph()
	}

	if up {
		if err := gemm.ConvUp2BiasCtx(ctx, b.bf16, out.data, wv, xv, bv, co, ci, h, wd, kh, kw, pad, ho, wo); err != nil {
			return fail(err)
		}
		return out
	}

	if kh == 1 && kw == 1 && pad == 0 {
		// [Co, Ci]·[Ci, H·W]
		if err := b.matMulN(ctx, out.data, wv, xv, co, h*wd, ci); err != nil {
			return fail(err)
		}
		b.addChannelBias(out.data, bv, co, h*wd)
		return out
	}

	// [Co, K]·im2col(x)[K, H'·W'], the column matrix packed straight from
	// x by the GEMM (never materialized).
	// The bias is added to each tile of the output while it is in cache.
	if err := gemm.ConvBiasCtx(ctx, b.bf16, out.data, wv, xv, bv, co, ci, h, wd, kh, kw, pad, ho, wo); err != nil {
		return fail(err)
	}
	return out
}

// addChannelBias adds bias[c] to every value of channel c of x [C, hw].
func (b *Backend) addChannelBias(x, bias []float32, c, hw int) {
	if bias == nil {
		return
	}
	parallelFor(b.threads, c, max(1, ewGrain/max(hw, 1)), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			bc := bias[ch]
			row := x[ch*hw : (ch+1)*hw]
			for i := range row {
				row[i] += bc
			}
		}
	})
}
