package vae

import "github.com/zimage/zimage/zimage/compute"

// Ops a backend may offer beyond compute.Backend that save whole
// activations (the CPU backend has them: a fresh 64–128 MB map is ~16–32K
// page faults in a process's first 512² decode). Graph code calls the
// helpers below, which run the plain op sequence on other backends, with
// the same values either way.

// upsampleConver convolves the nearest 2× upsampling of a map without
// storing it.
type upsampleConver interface {
	Upsample2xConv2D(x, w, bias compute.Tensor, pad int) compute.Tensor
}

// inPlacer writes a result over an operand the caller is done with (the
// operand is consumed: freed, its buffer now the result's).
type inPlacer interface {
	AddInPlace(dst, y compute.Tensor) compute.Tensor
	GroupNormSiLUInPlace(x, w, b compute.Tensor, groups int, eps float32) compute.Tensor
}

// upsampleConvFree returns Conv2D(Upsample2x(x), w, bias, pad) and frees
// x (after the upsampling, in the plain sequence).
func upsampleConvFree(b compute.Backend, x, w, bias compute.Tensor, pad int) compute.Tensor {
	if f, ok := b.(upsampleConver); ok {
		y := f.Upsample2xConv2D(x, w, bias, pad)
		b.Free(x)
		return y
	}
	u := b.Upsample2x(x) // [C, 2h, 2w]
	b.Free(x)
	y := b.Conv2D(u, w, bias, pad) // [Co, 2h+2·pad-2, 2w+2·pad-2]
	b.Free(u)
	return y
}

// addFree returns dst + y and frees dst (in dst's storage where the
// backend can).
func addFree(b compute.Backend, dst, y compute.Tensor) compute.Tensor {
	if f, ok := b.(inPlacer); ok {
		return f.AddInPlace(dst, y)
	}
	out := b.Add(dst, y)
	b.Free(dst)
	return out
}

// groupNormSiLUFree returns SiLU(GroupNorm(x)) and frees x: in x's storage
// where the backend can. With a fused op x lives until the one pass ends
// ([x, out]); without one, x is freed right after the norm so the sequence
// also holds two activations at a time ([x, n] then [n, out]) —
// fused.GroupNormSiLU's fallback would keep x through the SiLU, one
// activation more than the residency plan counts.
func groupNormSiLUFree(b compute.Backend, x, w, bias compute.Tensor, groups int) compute.Tensor {
	if f, ok := b.(inPlacer); ok {
		return f.GroupNormSiLUInPlace(x, w, bias, groups, normEps)
	}
	if f, ok := b.(fusedGroupNormSiLU); ok {
		out := f.GroupNormSiLU(x, w, bias, groups, normEps)
		b.Free(x)
		return out
	}
	n := b.GroupNorm(x, w, bias, groups, normEps)
	b.Free(x)
	out := b.SiLU(n)
	b.Free(n)
	return out
}

// fusedGroupNormSiLU is the GroupNorm → SiLU chain of cuda/fused.Ops.
type fusedGroupNormSiLU interface {
	GroupNormSiLU(x, w, b compute.Tensor, groups int, eps float32) compute.Tensor
}
