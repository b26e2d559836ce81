package cpu

import (
	"math"

	"github.com/zimage/zimage/zimage/compute"
)

// The fused chains of cuda/fused on the CPU: one pass over memory and one
// output allocation where the op sequence makes two or three. Each computes
// exactly the float32 arithmetic of its sequence (same roundings, same
// float64 statistics), so results are bit-identical to the plain ops. Any
// operand the chain's first op would reject runs the plain sequence, which
// records the same error the unfused graph would. GroupNormSiLU's SiLU may
// take the scalar path for a channel's last few values where the plain SiLU
// took the vector one (or the reverse): they agree to a few ulp.
// (The Backend satisfies fused.Ops; fused_test.go checks it: importing
// cuda/fused here would make its tests, which use this package, a cycle.)

// rmsScale is RMSNorm's 1/sqrt(mean(x²)+eps): Σx² in float32 lanes per
// block of sumBlockLen values, float64 across blocks.
func rmsScale(src []float32, eps float32) float32 {
	ss := sqDevRun(src, 0)
	return float32(1 / math.Sqrt(ss/float64(len(src))+float64(eps)))
}

// rmsRow writes RMSNorm(src)·w (w nil: no gain) to dst; RMSNorm itself
// runs it.
func rmsRow(dst, src, w []float32, eps float32) {
	s := rmsScale(src, eps)
	if w == nil {
		scaleRow(dst, src, s) // dst[i] = src[i]·s
		return
	}
	scaleMulRow(dst, src, w, s) // dst[i] = float32(src[i]·s)·w[i]
}

// optValues returns the float32 values of an optional operand (nil: nil,
// true).
func (b *Backend) optValues(op string, t *Tensor) ([]float32, bool) {
	if t == nil {
		return nil, true
	}
	v := b.values(op, t)
	return v, v != nil
}

// RMSNormModulate returns Modulate(RMSNorm(x, w, eps), scale).
func (b *Backend) RMSNormModulate(x, w, scale compute.Tensor, eps float32) compute.Tensor {
	const op = "RMSNormModulate"
	_, _, r1 := compute.NormShape("RMSNorm", x, w)
	m, d, r2 := compute.RowBroadcastShape("Modulate", x, scale)
	if scale == nil || r1 != nil || r2 != nil {
		n := b.RMSNorm(x, w, eps)
		if scale == nil {
			return n
		}
		out := b.Modulate(n, scale)
		b.Free(n)
		return out
	}
	ts, ok := b.operands(op, nil, x, w, scale)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	xv := b.values(op, ts[0])
	wv, okw := b.optValues(op, ts[1])
	sv := b.values(op, ts[2])
	if xv == nil || !okw || sv == nil {
		return b.placeholder(ts[0].shape...)
	}
	s1 := make([]float32, d)
	for i, v := range sv[:d] {
		s1[i] = 1 + v
	}
	out := b.newTensor(ts[0].shape...)
	parallelFor(b.threads, m, max(1, ewGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dst := out.data[r*d : (r+1)*d]
			rmsRow(dst, xv[r*d:(r+1)*d], wv, eps)
			mulRow(dst, dst, s1) // ·(1 + scale)
		}
	})
	return out
}

// RMSNormGatedAdd returns GatedAdd(x, RMSNorm(y, w, eps), gate).
func (b *Backend) RMSNormGatedAdd(x, y, w, gate compute.Tensor, eps float32) compute.Tensor {
	const op = "RMSNormGatedAdd"
	_, _, r1 := compute.NormShape("RMSNorm", y, w)
	_, r2 := compute.GatedAddShape(x, y, gate)
	xs := shapeOf(x)
	if r1 != nil || r2 != nil || len(xs) != 2 {
		n := b.RMSNorm(y, w, eps)
		out := b.GatedAdd(x, n, gate)
		b.Free(n)
		return out
	}
	ts, ok := b.operands(op, nil, x, y, w, gate)
	if !ok {
		return b.placeholder(xs...)
	}
	m, d := ts[0].shape[0], ts[0].shape[1]
	xv, yv := b.values(op, ts[0]), b.values(op, ts[1])
	wv, okw := b.optValues(op, ts[2])
	gv, okg := b.optValues(op, ts[3])
	if xv == nil || yv == nil || !okw || !okg {
		return b.placeholder(xs...)
	}
	var g []float32
	if gv != nil {
		g = make([]float32, d)
		for i, v := range gv[:d] {
			g[i] = float32(math.Tanh(float64(v)))
		}
	}
	out := b.newTensor(ts[0].shape...)
	parallelFor(b.threads, m, max(1, ewGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			a, dst := xv[r*d:(r+1)*d], out.data[r*d:(r+1)*d]
			rmsRow(dst, yv[r*d:(r+1)*d], wv, eps)
			if g == nil {
				addRow(dst, a, dst)
				continue
			}
			gatedAddRow(dst, a, g, dst) // a + float32(tanh(gate)·norm)
		}
	})
	return out
}

// AddRMSNorm returns sum = x + y and RMSNorm(sum, w, eps).
func (b *Backend) AddRMSNorm(x, y, w compute.Tensor, eps float32) (sum, norm compute.Tensor) {
	const op = "AddRMSNorm"
	_, r1 := compute.SameShape("Add", x, y)
	_, _, r2 := compute.NormShape("RMSNorm", x, w)
	if r1 != nil || r2 != nil {
		sum = b.Add(x, y)
		return sum, b.RMSNorm(sum, w, eps)
	}
	ts, ok := b.operands(op, nil, x, y, w)
	if !ok {
		return b.placeholder(shapeOf(x)...), b.placeholder(shapeOf(x)...)
	}
	xv, yv := b.values(op, ts[0]), b.values(op, ts[1])
	wv, okw := b.optValues(op, ts[2])
	if xv == nil || yv == nil || !okw {
		return b.placeholder(ts[0].shape...), b.placeholder(ts[0].shape...)
	}
	shape := ts[0].shape
	d := shape[len(shape)-1]
	m := len(xv) / d
	s, n := b.newTensor(shape...), b.newTensor(shape...)
	parallelFor(b.threads, m, max(1, ewGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			a, c, dst := xv[r*d:(r+1)*d], yv[r*d:(r+1)*d], s.data[r*d:(r+1)*d]
			addRow(dst, a, c)
			rmsRow(n.data[r*d:(r+1)*d], dst, wv, eps)
		}
	})
	return s, n
}

// HeadRMSNormRoPE returns RoPE(per-head RMSNorm(x, w, eps), cos, sin).
func (b *Backend) HeadRMSNormRoPE(x, w, cos, sin compute.Tensor, heads int, eps float32, interleaved bool) compute.Tensor {
	const op = "HeadRMSNormRoPE"
	l, dh, r1 := compute.RoPEShape(x, cos, sin, heads)
	if r1 != nil || (w != nil && !sameVector(w, dh)) {
		s := shapeOf(x)
		if len(s) != 2 || heads <= 0 || s[1]%heads != 0 {
			return b.RoPE(x, cos, sin, heads, interleaved) // records the shape error
		}
		n := b.RMSNorm(b.Reshape(x, s[0]*heads, s[1]/heads), w, eps)
		out := b.RoPE(b.Reshape(n, s[0], s[1]), cos, sin, heads, interleaved)
		b.Free(n)
		return out
	}
	ts, ok := b.operands(op, nil, x, w, cos, sin)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	xv := b.values(op, ts[0])
	wv, okw := b.optValues(op, ts[1])
	cv, sv := b.values(op, ts[2]), b.values(op, ts[3])
	if xv == nil || !okw || cv == nil || sv == nil {
		return b.placeholder(ts[0].shape...)
	}
	half := dh / 2
	d := heads * dh
	out := b.newTensor(ts[0].shape...)
	parallelFor(b.threads, l, max(1, ewGrain/d), func(lo, hi int) {
		nrm := make([]float32, dh)
		for r := lo; r < hi; r++ {
			cr, sr := cv[r*half:(r+1)*half], sv[r*half:(r+1)*half]
			for h := range heads {
				rmsRow(nrm, xv[r*d+h*dh:r*d+(h+1)*dh], wv, eps)
				dst := out.data[r*d+h*dh : r*d+(h+1)*dh]
				if interleaved {
					ropePairs(dst, nrm, cr, sr)
				} else {
					ropeHalves(dst[:half], dst[half:], nrm[:half], nrm[half:], cr, sr)
				}
			}
		}
	})
	return out
}

// sameVector reports whether t is [n], the gain shape RMSNorm takes.
func sameVector(t compute.Tensor, n int) bool {
	s := t.Shape()
	return len(s) == 1 && s[0] == n
}

// GroupNormSiLU returns SiLU(GroupNorm(x, w, bias, groups, eps)).
func (b *Backend) GroupNormSiLU(x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	return b.groupNorm("GroupNormSiLU", x, w, bias, groups, eps, true)
}
