// Package fused names the fused op chains a backend may offer beyond
// compute.Backend, with one helper per chain that runs the fused op when the
// backend has it and the plain op sequence otherwise, so graph code can use
// the helpers on every backend:
//
//	n := fused.RMSNormModulate(b, x, w, s, eps) // Modulate(RMSNorm(x, w, eps), s)
//
// The CUDA backend implements Ops: each chain is one kernel, one pass over
// memory where the sequence makes two or three, and one rounding to the
// backend's dtype where the sequence rounds after every op. The CPU backend
// does not (its ops are not bound by memory passes in the same way); the
// helpers give it the sequence. The package depends only on compute.
//
// Why explicit calls rather than fusion behind compute.Backend: every op
// returns a materialised tensor that the graphs may free or read at once (the
// DiT frees q and k right after their RMSNorm), so a backend that deferred
// an op to fuse it with the next would have to keep freed inputs alive and
// guess what comes next; the chains are few and fixed, so naming them is
// simpler and checkable.
//
// Where the Z-Image graphs would use them (per DiT block at 1024², each
// saves a write and a read of an [L, D] = 4224×3840 activation, ~32 MB in
// bf16):
//
//	DiT:   RMSNorm → Modulate (attention and FFN inputs), RMSNorm → GatedAdd
//	       (sandwich norm + gated residual, twice), per-head q/k RMSNorm → RoPE
//	Qwen3: Add → RMSNorm (residual + the next norm), per-head q/k RMSNorm → RoPE
//	VAE:   GroupNorm → SiLU (every resnet, twice, and before conv_out)
package fused

import "github.com/zimage/zimage/zimage/compute"

// Ops is the set of fused chains. Each method equals the composition in its
// comment up to rounding; nil optional inputs mean the same as for the
// plain ops.
type Ops interface {
	// RMSNormModulate returns Modulate(RMSNorm(x, w, eps), scale): x [M, D],
	// w [D] or nil, scale [D] or nil (no modulation).
	RMSNormModulate(x, w, scale compute.Tensor, eps float32) compute.Tensor
	// RMSNormGatedAdd returns GatedAdd(x, RMSNorm(y, w, eps), gate): the
	// residual x plus tanh(gate)·RMSNorm(y), gate [D] or nil (a gate of 1).
	RMSNormGatedAdd(x, y, w, gate compute.Tensor, eps float32) compute.Tensor
	// AddRMSNorm returns sum = Add(x, y) and RMSNorm(sum, w, eps); the
	// caller owns both.
	AddRMSNorm(x, y, w compute.Tensor, eps float32) (sum, norm compute.Tensor)
	// HeadRMSNormRoPE returns RoPE(RMSNorm over each head's dh values of
	// x [L, heads·dh] with gain w [dh] (or nil), cos, sin, heads,
	// interleaved).
	HeadRMSNormRoPE(x, w, cos, sin compute.Tensor, heads int, eps float32, interleaved bool) compute.Tensor
	// GroupNormSiLU returns SiLU(GroupNorm(x, w, b, groups, eps)).
	GroupNormSiLU(x, w, b compute.Tensor, groups int, eps float32) compute.Tensor
}

// RMSNormModulate returns Modulate(RMSNorm(x, w, eps), scale) (scale nil:
// just the norm).
func RMSNormModulate(b compute.Backend, x, w, scale compute.Tensor, eps float32) compute.Tensor {
	if f, ok := b.(Ops); ok {
		return f.RMSNormModulate(x, w, scale, eps)
	}
	n := b.RMSNorm(x, w, eps)
	if scale == nil {
		return n
	}
	m := b.Modulate(n, scale)
	b.Free(n)
	return m
}

// RMSNormGatedAdd returns x + tanh(gate)·RMSNorm(y, w, eps) (gate nil: 1).
func RMSNormGatedAdd(b compute.Backend, x, y, w, gate compute.Tensor, eps float32) compute.Tensor {
	if f, ok := b.(Ops); ok {
		return f.RMSNormGatedAdd(x, y, w, gate, eps)
	}
	n := b.RMSNorm(y, w, eps)
	out := b.GatedAdd(x, n, gate)
	b.Free(n)
	return out
}

// AddRMSNorm returns x + y and its RMSNorm with gain w.
func AddRMSNorm(b compute.Backend, x, y, w compute.Tensor, eps float32) (sum, norm compute.Tensor) {
	if f, ok := b.(Ops); ok {
		return f.AddRMSNorm(x, y, w, eps)
	}
	sum = b.Add(x, y)
	return sum, b.RMSNorm(sum, w, eps)
}

// HeadRMSNormRoPE normalises every head of x [L, heads·dh] over its dh
// values (gain w [dh], or nil) and rotates it by cos, sin [L, dh/2].
func HeadRMSNormRoPE(b compute.Backend, x, w, cos, sin compute.Tensor, heads int, eps float32, interleaved bool) compute.Tensor {
	if f, ok := b.(Ops); ok {
		return f.HeadRMSNormRoPE(x, w, cos, sin, heads, eps, interleaved)
	}
	s := x.Shape()
	if len(s) != 2 || heads <= 0 || s[1]%heads != 0 {
		return b.RoPE(x, cos, sin, heads, interleaved) // records the shape error
	}
	n := b.RMSNorm(b.Reshape(x, s[0]*heads, s[1]/heads), w, eps)
	out := b.RoPE(b.Reshape(n, s[0], s[1]), cos, sin, heads, interleaved)
	b.Free(n)
	return out
}

// GroupNormSiLU returns SiLU(GroupNorm(x, w, bias, groups, eps)).
func GroupNormSiLU(b compute.Backend, x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	if f, ok := b.(Ops); ok {
		return f.GroupNormSiLU(x, w, bias, groups, eps)
	}
	n := b.GroupNorm(x, w, bias, groups, eps)
	out := b.SiLU(n)
	b.Free(n)
	return out
}
