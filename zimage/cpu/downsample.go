package cpu

import (
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Downsample2D is the VAE encoder's stride-2 convolution (diffusers'
// Downsample2D with padding 0): x [Ci, H, W] (H, W even) padded with one zero
// row below and one zero column right, 3×3 kernel w [Co, Ci, 3, 3], stride 2
// → [Co, H/2, W/2]: out[o, i, j] = bias[o] + Σ w[o, c, ky, kx]·x[c, 2i+ky, 2j+kx].
//
// It is the optional fast path of vae.Downsample (which otherwise runs the
// stride-1 conv at full resolution and keeps every other row and column):
// a strided im2col then one GEMM per tile of output rows, a quarter of the
// work, with the same products summed in the same order.
func (b *Backend) Downsample2D(x, w, bias compute.Tensor) compute.Tensor {
	const op = "Downsample2D"
	full, rule := compute.Conv2DShape(x, w, bias, 1)
	shape := []int{full[0], full[1] / 2, full[2] / 2}
	if rule == nil {
		ws := w.Shape()
		if ws[2] != 3 || ws[3] != 3 || full[1]%2 != 0 || full[2]%2 != 0 {
			rule = &compute.ShapeError{Op: op, Shapes: compute.Shapes(x, w, bias), Reason: "want a 3×3 kernel and even H and W"}
		}
	}
	ph := func() compute.Tensor { return b.placeholder(shape...) }
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return ph()
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	ci, h, wd := tx.shape[0], tx.shape[1], tx.shape[2]
	co, ho, wo := shape[0], shape[1], shape[2]
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
	k := ci * 9
	cw := b.current()
	ctx := cw.context()
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
		im2colStride2(b.threads, col[:k*n], xv, ci, h, wd, y0, y1, wo)
		dst := out.data
		if tmp != nil {
			dst = tmp[:co*n]
		}
		if err := gemm.MatMulCtx(ctx, dst, wv, col[:k*n], co, n, k); err != nil {
			b.opErr(op, cw, err)
			b.Free(out)
			return ph()
		}
		if tmp != nil {
			parallelFor(b.threads, co, max(1, ewGrain/n), func(lo, hi int) {
				for o := lo; o < hi; o++ {
					copy(out.data[o*ho*wo+y0*wo:o*ho*wo+y1*wo], tmp[o*n:(o+1)*n])
				}
			})
		}
	}
	b.addChannelBias(out.data, bv, co, ho*wo)
	return out
}

// im2colStride2 fills col [ci·9, (y1-y0)·wo] for output rows [y0, y1) of
// Downsample2D: row (c, ky, kx) holds x[c, 2y+ky, 2xo+kx], zero past the
// last row or column.
func im2colStride2(threads int, col, x []float32, ci, h, w, y0, y1, wo int) {
	n := (y1 - y0) * wo
	parallelFor(threads, ci*9, max(1, ewGrain/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c, ky, kx := r/9, (r/3)%3, r%3
			dst := col[r*n : (r+1)*n]
			for y := y0; y < y1; y++ {
				d := dst[(y-y0)*wo : (y-y0+1)*wo]
				iy := 2*y + ky
				if iy >= h {
					clear(d)
					continue
				}
				src := x[c*h*w+iy*w : c*h*w+(iy+1)*w]
				for xo := range d {
					if ix := 2*xo + kx; ix < w {
						d[xo] = src[ix]
					} else {
						d[xo] = 0
					}
				}
			}
		}
	})
}
