package cuda

import (
	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Downsample2D is the VAE encoder's stride-2 convolution (it makes the
// backend a vae.Strided): x [Ci, H, W] (H, W even) padded with one zero row
// below and one zero column right, 3×3 kernel w [Co, Ci, 3, 3], stride 2 →
// [Co, H/2, W/2]: out[o, i, j] = bias[o] + Σ w[o, c, ky, kx]·x[c, 2i+ky, 2j+kx].
//
// A strided im2col (zk_im2col_s2_*) in chunks of output positions, each a
// cuBLASLt GEMM into the output, then the per-channel bias: a quarter of the
// work of the stride-1 conv that keeps odd rows and columns, which stays the
// fallback when the conv-strided family is off.
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
	if rule != nil {
		b.operands(op, rule, x, w, bias) // records the error
		return b.placeholder(shape...)
	}
	if !b.on(FamConv) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor {
			return c.(*cpu.Backend).Downsample2D(in[0], in[1], in[2])
		}, x, w, bias)
	}
	if !b.on(FamConvStrided) {
		return b.downsampleComposed(x, w, bias)
	}
	ts, ok := b.operands(op, nil, x, w, bias)
	if !ok {
		return b.placeholder(shape...)
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	ci, h, wd := tx.shape[0], tx.shape[1], tx.shape[2]
	co := tw.shape[0]
	var bp driver.DevicePtr
	if tb != nil {
		bp = tb.ptr
	}
	kk := ci * 9
	p := shape[1] * shape[2]
	return b.exec(op, shape, func(out *Tensor) error {
		t := b.blasType()
		np := max(1, min(p, colBudget/(kk*b.esize), maxElems/kk))
		col, err := b.d.alloc(uint64(kk * np * b.esize))
		if err != nil {
			return err
		}
		defer b.d.free(col)
		for p0 := 0; p0 < p; p0 += np {
			n := min(np, p-p0)
			err := b.ew(b.k.im2colS2, kk*n, func(l *launcher) {
				l.p(tx.ptr).p(col).i(ci).i(h).i(wd).i(p0).i(n)
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
		if bp == 0 {
			return nil
		}
		return b.ew(b.k.chanBias, co*p, func(l *launcher) { l.p(out.ptr).p(bp).i(co * p).i(p) })
	})
}

// downsampleComposed is Downsample2D without the strided kernel: the
// stride-1 conv with padding 1, whose output at (2i+1, 2j+1) reads exactly
// x[c, 2i+ky, 2j+kx], keeping the odd rows and columns (as vae.Downsample
// does on backends without a strided conv).
func (b *Backend) downsampleComposed(x, w, bias compute.Tensor) compute.Tensor {
	y := b.Conv2D(x, w, bias, 1) // [C, H, W]
	sh := y.Shape()
	c, h, wd := sh[0], sh[1], sh[2]
	rows := b.Slice(b.Reshape(y, c*h/2, 2*wd), wd, 2*wd) // rows 1, 3, … [C·H/2, W]
	b.Free(y)
	cols := b.Slice(b.Reshape(rows, c*h/2*wd/2, 2), 1, 2) // columns 1, 3, … [C·H/2·W/2, 1]
	b.Free(rows)
	out := b.Scale(b.Reshape(cols, c, h/2, wd/2), 1, 0) // an owned [C, H/2, W/2] (exact copy)
	b.Free(cols)
	return out
}
