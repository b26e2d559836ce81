package cuda

import (
	"fmt"
	"slices"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/zimage/compute"
)

// The backend offers the fused op chains of package cuda/fused; graphs reach
// them through the helpers there (fused.RMSNormModulate(b, ...)), which fall
// back to the op sequence on other backends.
var _ fused.Ops = (*Backend)(nil)

// RMSNormModulate returns RMSNorm(x, w, eps)·(1 + scale) in one pass: x
// [M, D], w [D] or nil, scale [D] (or [1, D]) or nil.
func (b *Backend) RMSNormModulate(x, w, scale compute.Tensor, eps float32) compute.Tensor {
	if !b.on(FamFusedNorm) {
		return fused.RMSNormModulate(unfused{b}, x, w, scale, eps)
	}
	_, out := b.rmsnormEx("RMSNormModulate", normEx{x: x, w: w, scale: scale}, eps)
	return out
}

// RMSNormGatedAdd returns x + tanh(gate)·RMSNorm(y, w, eps) in one pass (gate
// nil: x + RMSNorm(y, w, eps)).
func (b *Backend) RMSNormGatedAdd(x, y, w, gate compute.Tensor, eps float32) compute.Tensor {
	if !b.on(FamFusedNorm) {
		return fused.RMSNormGatedAdd(unfused{b}, x, y, w, gate, eps)
	}
	_, out := b.rmsnormEx("RMSNormGatedAdd", normEx{x: y, w: w, res: x, gate: gate}, eps)
	return out
}

// AddRMSNorm returns sum = x + y and RMSNorm(sum, w, eps) in one pass (the
// norm sees the sum as stored).
func (b *Backend) AddRMSNorm(x, y, w compute.Tensor, eps float32) (sum, norm compute.Tensor) {
	if !b.on(FamFusedNorm) {
		return fused.AddRMSNorm(unfused{b}, x, y, w, eps)
	}
	return b.rmsnormEx("AddRMSNorm", normEx{x: x, xadd: y, w: w, sum: true}, eps)
}

// unfused hides the backend's fused ops, so the helpers of package fused
// run the plain op sequence on it (the fallback of a disabled fused family).
type unfused struct{ compute.Backend }

// normEx are the operands of zk_rmsnorm_ex (see fused.cu); nil is absent.
type normEx struct {
	x, xadd, w, scale, res, gate compute.Tensor
	sum                          bool // also return x + xadd
}

func (b *Backend) rmsnormEx(op string, a normEx, eps float32) (sum, out compute.Tensor) {
	shape := shapeOf(a.x)
	ph := func() (compute.Tensor, compute.Tensor) {
		if a.sum {
			return b.placeholder(shape...), b.placeholder(shape...)
		}
		return nil, b.placeholder(shape...)
	}
	if b.failed() {
		return ph()
	}
	all := []compute.Tensor{a.x, a.xadd, a.w, a.scale, a.res, a.gate}
	var given []compute.Tensor
	for _, t := range all {
		if t != nil {
			given = append(given, t)
		}
	}
	tx := b.get(op, a.x)
	if tx == nil {
		return ph()
	}
	m, d, err := compute.NormShape(op, a.x, nil)
	if err != nil {
		b.setErr(err)
		return ph()
	}
	// Same-shape operands and [D] vectors; absent ones stay 0 (null).
	var ptr [6]driver.DevicePtr
	ptr[0] = tx.ptr
	for i, t := range all[1:] {
		if t == nil {
			continue
		}
		tt := b.get(op, t)
		if tt == nil {
			return ph()
		}
		switch i + 1 {
		case 1, 4: // xadd, res
			if !slices.Equal(tt.shape, tx.shape) {
				b.shapeErr(op, "operands must have the same shape", given...)
				return ph()
			}
		case 2: // w: any shape of D elements, like RMSNorm
			if tt.numel() != d {
				b.shapeErr(op, fmt.Sprintf("weight must have %d elements", d), given...)
				return ph()
			}
		default: // scale, gate: [D] or [1, D], like Modulate and GatedAdd
			if tt.numel() != d || (len(tt.shape) != 1 && !(len(tt.shape) == 2 && tt.shape[0] == 1)) {
				b.shapeErr(op, fmt.Sprintf("vector must be [%d] or [1, %d]", d, d), given...)
				return ph()
			}
		}
		ptr[i+1] = tt.ptr
	}
	launch := func(sumPtr, outPtr driver.DevicePtr) error {
		if m == 0 {
			return nil
		}
		wpb := b.d.block / 32
		b.d.args.reset().p(ptr[0]).p(ptr[1]).p(sumPtr).p(ptr[2]).p(ptr[3]).p(ptr[4]).p(ptr[5]).p(outPtr).i(m).i(d).f(eps)
		return b.d.launch(b.k.rmsnormEx, dim3{uint32((m + wpb - 1) / wpb), 1, 1}, b.d.threads(), 0)
	}
	if !a.sum {
		return nil, b.exec(op, tx.shape, func(o *Tensor) error { return launch(0, o.ptr) })
	}
	return b.exec2(op, tx.shape, func(s, o *Tensor) error { return launch(s.ptr, o.ptr) })
}

// exec2 is exec for ops with two outputs of the same shape.
func (b *Backend) exec2(op string, shape []int, fn func(a, c *Tensor) error) (compute.Tensor, compute.Tensor) {
	var second *Tensor
	first := b.exec(op, shape, func(a *Tensor) error {
		p, err := b.d.alloc(uint64(numel(shape) * b.esize))
		if err != nil {
			return err
		}
		c := &Tensor{ptr: p, shape: slices.Clone(shape), dt: b.dt}
		if err := fn(a, c); err != nil {
			b.d.free(p)
			return err
		}
		second = c
		return nil
	})
	if second == nil {
		return first, b.placeholder(shape...)
	}
	return first, second
}

// HeadRMSNormRoPE normalises each head of x [L, heads·dh] over its dh values
// (gain w [dh] or nil) and rotates it by cos, sin [L, dh/2] (interleaved or
// half-split pairs, as RoPE), in one pass.
func (b *Backend) HeadRMSNormRoPE(x, w, cos, sin compute.Tensor, heads int, eps float32, interleaved bool) compute.Tensor {
	const op = "HeadRMSNormRoPE"
	if !b.on(FamFusedHeadRoPE) {
		return fused.HeadRMSNormRoPE(unfused{b}, x, w, cos, sin, heads, eps, interleaved)
	}
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tc, ts := b.get(op, x), b.get(op, cos), b.get(op, sin)
	if tx == nil || tc == nil || ts == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if len(tx.shape) != 2 || heads <= 0 || tx.shape[1]%heads != 0 || (tx.shape[1]/heads)%2 != 0 {
		b.shapeErr(op, fmt.Sprintf("x must be [L, heads·dh] with %d heads and even dh", heads), x, w, cos, sin)
		return b.placeholder(tx.shape...)
	}
	l, dh := tx.shape[0], tx.shape[1]/heads
	half := dh / 2
	if len(tc.shape) != 2 || tc.shape[0] != l || tc.shape[1] != half || len(ts.shape) != 2 || ts.shape[0] != l || ts.shape[1] != half {
		b.shapeErr(op, fmt.Sprintf("cos and sin must be [%d, %d]", l, half), x, w, cos, sin)
		return b.placeholder(tx.shape...)
	}
	var wp driver.DevicePtr
	if w != nil {
		tw := b.get(op, w)
		if tw == nil {
			return b.placeholder(tx.shape...)
		}
		if tw.numel() != dh {
			b.shapeErr(op, fmt.Sprintf("weight must have %d elements", dh), x, w, cos, sin)
			return b.placeholder(tx.shape...)
		}
		wp = tw.ptr
	}
	il := 0
	if interleaved {
		il = 1
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		rows := l * heads
		if rows == 0 {
			return nil
		}
		wpb := b.d.block / 32
		b.d.args.reset().p(tx.ptr).p(wp).p(tc.ptr).p(ts.ptr).p(out.ptr).i(l).i(heads).i(dh).f(eps).i(il)
		return b.d.launch(b.k.headNormRoPE, dim3{uint32((rows + wpb - 1) / wpb), 1, 1}, b.d.threads(), 0)
	})
}
