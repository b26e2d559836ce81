package cpu

import (
	"math"

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
	shape, rule := compute.SameShape(op, x, y)
	ts, ok := b.operands(op, rule, x, y)
	if !ok {
		return b.placeholder(shape...)
	}
	tx, ty := ts[0], ts[1]
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
	return b.binary("Add", a, c, addRow)
}

// Scale returns x·s + c, the product rounded before the sum.
func (b *Backend) Scale(x compute.Tensor, s, c float32) compute.Tensor {
	return b.unary("Scale", x, func(dst, src []float32) { scaleShiftRow(dst, src, s, c) })
}

// Modulate returns x·(1 + scale) with scale [D] broadcast over rows.
func (b *Backend) Modulate(x, scale compute.Tensor) compute.Tensor {
	const op = "Modulate"
	m, d, rule := compute.RowBroadcastShape(op, x, scale)
	in, ok := b.operands(op, rule, x, scale)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ts := in[0], in[1]
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
			mulRow(out.data[r*d:(r+1)*d], xv[r*d:(r+1)*d], s1)
		}
	})
	return out
}

// GatedAdd returns x + tanh(gate)·y; a nil gate is 1.
func (b *Backend) GatedAdd(x, y, gate compute.Tensor) compute.Tensor {
	const op = "GatedAdd"
	if gate == nil {
		return b.binary(op, x, y, addRow)
	}
	_, rule := compute.GatedAddShape(x, y, gate)
	in, ok := b.operands(op, rule, x, y, gate)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ty, tg := in[0], in[1], in[2]
	m, d := tx.shape[0], tx.shape[1]
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
			gatedAddRow(out.data[r*d:(r+1)*d], xv[r*d:(r+1)*d], g, yv[r*d:(r+1)*d])
		}
	})
	return out
}
