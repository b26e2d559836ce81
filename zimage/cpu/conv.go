package cpu

import (
	"github.com/zimage/zimage/zimage/compute"
)

// colBudget bounds the im2col buffer of one Conv2D tile (bytes).
var colBudget = 64 << 20 // a variable so tests can force tiling

// Conv2D is a stride-1 cross-correlation with zero padding pad:
// x [Ci, H, W], w [Co, Ci, kh, kw], bias [Co] or nil → [Co, H', W'].
//
// A 1×1 kernel without padding is one GEMM on the input as it is. Otherwise
// the output rows are cut into tiles whose im2col matrix [Ci·kh·kw, rows·W']
// fits colBudget; each tile is one GEMM W[Co, K]·col[K, n] (the kernel is
// widened to float32 once per call). With WithBF16 the GEMMs run in bf16.
func (b *Backend) Conv2D(x, w, bias compute.Tensor, pad int) compute.Tensor {
	const op = "Conv2D"
	shape, rule := compute.Conv2DShape(x, w, bias, pad)
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
	k := ci * kh * kw
	cw := b.current()
	ctx := cw.context()
	fail := func(err error) compute.Tensor {
		b.opErr(op, cw, err)
		b.Free(out)
		return ph()
	}

	if kh == 1 && kw == 1 && pad == 0 {
		// [Co, Ci]·[Ci, H·W]
		if err := b.matMulN(ctx, out.data, wv, xv, co, h*wd, ci); err != nil {
			return fail(err)
		}
		b.addChannelBias(out.data, bv, co, h*wd)
		return out
	}

	rows := max(1, min(ho, colBudget/(4*k*wo)))
	col := b.alloc(k * rows * wo)
	defer b.release(col)
	var tmp []float32
	if rows < ho {
		tmp = b.alloc(co * rows * wo)
		defer b.release(tmp)
	}
	for y0 := 0; y0 < ho; y0 += rows {
		if b.cancelled(cw) {
			b.Free(out)
			return ph()
		}
		y1 := min(y0+rows, ho)
		n := (y1 - y0) * wo
		im2col(b.threads, col[:k*n], xv, ci, h, wd, kh, kw, pad, y0, y1, wo)
		if tmp == nil {
			if err := b.matMulN(ctx, out.data, wv, col[:k*n], co, n, k); err != nil {
				return fail(err)
			}
			continue
		}
		c := tmp[:co*n]
		if err := b.matMulN(ctx, c, wv, col[:k*n], co, n, k); err != nil {
			return fail(err)
		}
		parallelFor(b.threads, co, max(1, ewGrain/n), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				copy(out.data[o*ho*wo+y0*wo:o*ho*wo+y1*wo], c[o*n:(o+1)*n])
			}
		})
	}
	b.addChannelBias(out.data, bv, co, ho*wo)
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

// im2col fills col [ci·kh·kw, (y1-y0)·wo] for output rows [y0, y1): row
// (c, dy, dx) holds x[c, y+dy-pad, xo+dx-pad] (zero outside the image).
func im2col(threads int, col, x []float32, ci, h, w, kh, kw, pad, y0, y1, wo int) {
	n := (y1 - y0) * wo
	parallelFor(threads, ci*kh*kw, max(1, ewGrain/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c, dy, dx := r/(kh*kw), (r/kw)%kh, r%kw
			dst := col[r*n : (r+1)*n]
			// Output columns xo with 0 ≤ xo+dx-pad < w.
			xlo := max(0, pad-dx)
			xhi := min(wo, w+pad-dx)
			for y := y0; y < y1; y++ {
				d := dst[(y-y0)*wo : (y-y0+1)*wo]
				iy := y + dy - pad
				if iy < 0 || iy >= h || xlo >= xhi {
					clear(d)
					continue
				}
				clear(d[:xlo])
				src := x[c*h*w+iy*w:]
				copy(d[xlo:xhi], src[xlo+dx-pad:xhi+dx-pad])
				clear(d[xhi:])
			}
		}
	})
}
