package cpu

import (
	"fmt"
	"math"
	"slices"

	"github.com/zimage/zimage/zimage/compute"
)

// ewGrain is the smallest chunk of an elementwise loop worth a goroutine.
const ewGrain = 16 << 10

// silu is x·sigmoid(x) = x / (1 + e^-x), rounded once to float32. The
// vectorised siluVec (AVX-512 expf) agrees to a few ulp.
func silu(x float32) float32 {
	return float32(float64(x) / (1 + math.Exp(-float64(x))))
}

// unary applies f elementwise to a copy of x.
func (b *Backend) unary(op string, x compute.Tensor, f func(dst, src []float32)) compute.Tensor {
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	t := b.get(op, x)
	if t == nil {
		return b.placeholder(shapeOf(x)...)
	}
	src := b.values(op, t)
	if src == nil {
		return b.placeholder(t.shape...)
	}
	out := b.newTensor(t.shape...)
	parallelFor(b.threads, len(src), ewGrain, func(lo, hi int) {
		f(out.data[lo:hi], src[lo:hi])
	})
	return out
}

// binary applies f elementwise to x and y of equal shapes.
func (b *Backend) binary(op string, x, y compute.Tensor, f func(dst, a, c []float32)) compute.Tensor {
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ty := b.get(op, x), b.get(op, y)
	if tx == nil || ty == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if !slices.Equal(tx.shape, ty.shape) {
		b.shapeErr(op, "shapes differ", x, y)
		return b.placeholder(tx.shape...)
	}
	a, c := b.values(op, tx), b.values(op, ty)
	if a == nil || c == nil {
		return b.placeholder(tx.shape...)
	}
	out := b.newTensor(tx.shape...)
	parallelFor(b.threads, len(a), ewGrain, func(lo, hi int) {
		f(out.data[lo:hi], a[lo:hi], c[lo:hi])
	})
	return out
}

// SiLU returns x·sigmoid(x).
func (b *Backend) SiLU(x compute.Tensor) compute.Tensor {
	return b.unary("SiLU", x, siluVec)
}

// SwiGLU returns silu(gate)·up.
func (b *Backend) SwiGLU(gate, up compute.Tensor) compute.Tensor {
	return b.binary("SwiGLU", gate, up, swigluVec)
}

// Add returns a + c.
func (b *Backend) Add(a, c compute.Tensor) compute.Tensor {
	return b.binary("Add", a, c, func(dst, x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			dst[i] = v + y[i]
		}
	})
}

// Scale returns x·s + c, the product rounded before the sum.
func (b *Backend) Scale(x compute.Tensor, s, c float32) compute.Tensor {
	return b.unary("Scale", x, func(dst, src []float32) {
		for i, v := range src {
			dst[i] = float32(v*s) + c
		}
	})
}

// rowBroadcast checks x [M, D] against a vector [D] (or [1, D]) and returns
// M, D.
func (b *Backend) rowBroadcast(op string, x, vec *Tensor, xs, vs compute.Tensor) (m, d int, ok bool) {
	if len(x.shape) != 2 {
		b.shapeErr(op, "x must be 2-D [M, D]", xs, vs)
		return 0, 0, false
	}
	m, d = x.shape[0], x.shape[1]
	if vec.numel() != d || (len(vec.shape) != 1 && !(len(vec.shape) == 2 && vec.shape[0] == 1)) {
		b.shapeErr(op, fmt.Sprintf("vector must be [%d] or [1, %d]", d, d), xs, vs)
		return 0, 0, false
	}
	return m, d, true
}

// Modulate returns x·(1 + scale) with scale [D] broadcast over rows.
func (b *Backend) Modulate(x, scale compute.Tensor) compute.Tensor {
	const op = "Modulate"
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ts := b.get(op, x), b.get(op, scale)
	if tx == nil || ts == nil {
		return b.placeholder(shapeOf(x)...)
	}
	m, d, ok := b.rowBroadcast(op, tx, ts, x, scale)
	if !ok {
		return b.placeholder(tx.shape...)
	}
	xv, sv := b.values(op, tx), b.values(op, ts)
	if xv == nil || sv == nil {
		return b.placeholder(tx.shape...)
	}
	s1 := make([]float32, d)
	for i, v := range sv {
		s1[i] = 1 + v
	}
	out := b.newTensor(tx.shape...)
	parallelFor(b.threads, m, max(1, ewGrain/max(d, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src, dst := xv[r*d:(r+1)*d], out.data[r*d:(r+1)*d]
			for i, v := range src {
				dst[i] = v * s1[i]
			}
		}
	})
	return out
}

// GatedAdd returns x + tanh(gate)·y; a nil gate is 1.
func (b *Backend) GatedAdd(x, y, gate compute.Tensor) compute.Tensor {
	const op = "GatedAdd"
	if gate == nil {
		return b.binary(op, x, y, func(dst, a, c []float32) {
			c = c[:len(a)]
			for i, v := range a {
				dst[i] = v + c[i]
			}
		})
	}
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ty, tg := b.get(op, x), b.get(op, y), b.get(op, gate)
	if tx == nil || ty == nil || tg == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if !slices.Equal(tx.shape, ty.shape) {
		b.shapeErr(op, "x and y shapes differ", x, y, gate)
		return b.placeholder(tx.shape...)
	}
	m, d, ok := b.rowBroadcast(op, tx, tg, x, gate)
	if !ok {
		return b.placeholder(tx.shape...)
	}
	xv, yv, gv := b.values(op, tx), b.values(op, ty), b.values(op, tg)
	if xv == nil || yv == nil || gv == nil {
		return b.placeholder(tx.shape...)
	}
	g := make([]float32, d)
	for i, v := range gv {
		g[i] = float32(math.Tanh(float64(v)))
	}
	out := b.newTensor(tx.shape...)
	parallelFor(b.threads, m, max(1, ewGrain/max(d, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			a, c, dst := xv[r*d:(r+1)*d], yv[r*d:(r+1)*d], out.data[r*d:(r+1)*d]
			for i, v := range a {
				dst[i] = v + float32(g[i]*c[i])
			}
		}
	})
	return out
}
