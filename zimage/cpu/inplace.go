package cpu

import (
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// Ops beyond compute.Backend that save whole activations in the VAE
// decoder, where every fresh buffer of a first decode is page faults (at
// 512² the maps are 64–128 MB): an upsampling read by the convolution
// after it instead of stored, and ops written over an input the caller is
// done with. The VAE finds them by type assertion and runs the plain op
// sequence on other backends. Each returns exactly the values of its
// sequence.
//
// A consumed operand reads as freed afterwards (as after Free; so do its
// views), and its buffer belongs to the result. An operand that cannot be
// consumed — a view, a weight, storage shared with another operand — is
// freed after the plain op instead.

// shapeOnly is a tensor shape for the shape rules, with no storage.
type shapeOnly []int

func (s shapeOnly) Shape() []int         { return s }
func (s shapeOnly) DType() weights.DType { return weights.F32 }

// Upsample2xConv2D returns Conv2D(Upsample2x(x), w, bias, pad), the same
// values; the convolution reads x through the upsampling
// (gemm.ConvUp2BiasCtx), so the [C, 2H, 2W] map is never stored. An x
// that is not [C, H, W] runs the two ops (which record the error).
func (b *Backend) Upsample2xConv2D(x, w, bias compute.Tensor, pad int) compute.Tensor {
	if len(shapeOf(x)) != 3 {
		u := b.Upsample2x(x)
		y := b.Conv2D(u, w, bias, pad)
		b.Free(u)
		return y
	}
	return b.conv2D("Upsample2xConv2D", x, w, bias, pad, true)
}

// AddInPlace returns dst + y in dst's storage and consumes dst.
func (b *Backend) AddInPlace(dst, y compute.Tensor) compute.Tensor {
	const op = "AddInPlace"
	td, ok := b.consumable(dst, y)
	if !ok {
		out := b.Add(dst, y)
		b.Free(dst)
		return out
	}
	shape, rule := compute.SameShape("Add", dst, y)
	ts, ok := b.operands(op, rule, dst, y)
	var c []float32
	if ok {
		c = b.values(op, ts[1])
	}
	if c == nil {
		b.Free(dst)
		return b.placeholder(shape...)
	}
	out := b.takeOver(td)
	d := out.data
	parallelFor(b.threads, len(d), ewGrain, func(lo, hi int) {
		addRow(d[lo:hi], d[lo:hi], c[lo:hi])
	})
	return out
}

// GroupNormSiLUInPlace returns SiLU(GroupNorm(x, w, bias, groups, eps)) in
// x's storage and consumes x.
func (b *Backend) GroupNormSiLUInPlace(x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	if _, ok := b.consumable(x, w, bias); !ok {
		out := b.GroupNormSiLU(x, w, bias, groups, eps)
		b.Free(x)
		return out
	}
	out := b.groupNormTo("GroupNormSiLU", x, w, bias, groups, eps, true, true)
	b.Free(x) // consumed even when the op failed (a no-op otherwise)
	return out
}

// consumable returns t when an op may write over its storage: a live
// activation that owns its buffer (not a view or a weight) and shares it
// with none of others.
func (b *Backend) consumable(t compute.Tensor, others ...compute.Tensor) (*Tensor, bool) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil || ct.placeholder || ct.freed || ct.w != nil || ct.base != nil || ct.data == nil {
		return nil, false
	}
	for _, o := range others {
		if ot, ok := o.(*Tensor); ok && ot != nil && (ot == ct || ot.base == ct) {
			return nil, false
		}
	}
	return ct, true
}

// takeOver moves t's buffer to a new handle, leaving t freed (t must be
// consumable).
func (b *Backend) takeOver(t *Tensor) *Tensor {
	out := &Tensor{shape: append([]int(nil), t.shape...), data: t.data}
	t.data, t.freed = nil, true
	return out
}
