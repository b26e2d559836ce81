package cpu

import (
	"math"

	"github.com/zimage/zimage/zimage/compute"
)

// Row statistics are accumulated in float32 vector lanes over blocks of
// sumBlockLen values and in float64 beyond: at least as accurate as torch's
// float32 reductions.

// RMSNorm returns x·rsqrt(mean(x²)+eps)·w per row.
func (b *Backend) RMSNorm(x, w compute.Tensor, eps float32) compute.Tensor {
	const op = "RMSNorm"
	m, d, rule := compute.NormShape(op, x, w)
	ts, ok := b.operands(op, rule, x, w)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tw := ts[0], ts[1]
	var wv []float32
	if tw != nil {
		if wv = b.values(op, tw); wv == nil {
			return b.placeholder(tx.shape...)
		}
	}
	xv := b.values(op, tx)
	if xv == nil {
		return b.placeholder(tx.shape...)
	}
	out := b.newTensor(tx.shape...)
	parallelFor(b.threads, m, max(1, ewGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			rmsRow(out.data[r*d:(r+1)*d], xv[r*d:(r+1)*d], wv, eps) // fused.go
		}
	})
	return out
}

// LayerNorm returns (x-mean)·rsqrt(var+eps) per row, biased variance.
func (b *Backend) LayerNorm(x compute.Tensor, eps float32) compute.Tensor {
	const op = "LayerNorm"
	m, d, rule := compute.NormShape(op, x, nil)
	ts, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx := ts[0]
	xv := b.values(op, tx)
	if xv == nil {
		return b.placeholder(tx.shape...)
	}
	out := b.newTensor(tx.shape...)
	parallelFor(b.threads, m, max(1, ewGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src, dst := xv[r*d:(r+1)*d], out.data[r*d:(r+1)*d]
			var sum float64
			for _, v := range src {
				sum += float64(v)
			}
			mean := sum / float64(d)
			var ss float64
			for _, v := range src {
				e := float64(v) - mean
				ss += e * e
			}
			s := 1 / math.Sqrt(ss/float64(d)+float64(eps))
			for i, v := range src {
				dst[i] = float32((float64(v) - mean) * s)
			}
		}
	})
	return out
}

// GroupNorm normalises x [C, ...] in groups of C/groups channels, then
// applies ·w[c] + b[c]. Statistics are two-pass in float64.
func (b *Backend) GroupNorm(x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	return b.groupNorm("GroupNorm", x, w, bias, groups, eps, false)
}

// siluChunk is the run of a channel that GroupNormSiLU normalises and then
// activates while it is in L1.
const siluChunk = 2048

// groupNorm is GroupNorm, followed by SiLU in the same pass when silu.
func (b *Backend) groupNorm(op string, x, w, bias compute.Tensor, groups int, eps float32, silu bool) compute.Tensor {
	return b.groupNormTo(op, x, w, bias, groups, eps, silu, false)
}

// groupNormTo is groupNorm, written over x's storage when inPlace (the
// caller has checked that x may be consumed: inplace.go). The statistics
// of a group are complete before any of its values is written, so the
// result is the same.
func (b *Backend) groupNormTo(op string, x, w, bias compute.Tensor, groups int, eps float32, silu, inPlace bool) compute.Tensor {
	c, rule := compute.GroupNormShape(op, x, w, bias, groups)
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	xv, wv, bv := b.values(op, tx), b.values(op, tw), b.values(op, tb)
	if xv == nil || wv == nil || bv == nil {
		return b.placeholder(tx.shape...)
	}
	hw := tx.numel() / c
	cg := c / groups
	var out *Tensor
	if inPlace {
		out = b.takeOver(tx)
	} else {
		out = b.newTensor(tx.shape...)
	}
	if hw == 0 {
		return out
	}
	if groupNormByGroup(b.threads, groups, hw) {
		groupNormGroups(b.threads, out.data, xv, wv, bv, groups, cg, hw, eps, silu) // groupnorm.go
		return out
	}
	// Per-channel sums in parallel (float32 lanes over blocks of
	// sumBlockLen, float64 beyond), then per-group statistics; the variance
	// is a second pass around the group mean.
	grain := max(1, (1<<16)/hw)
	sums := make([]float64, c)
	parallelFor(b.threads, c, grain, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var s float64
			row := xv[ch*hw : (ch+1)*hw]
			for i := 0; i < hw; i += sumBlockLen {
				s += sumBlock(row[i:min(i+sumBlockLen, hw)])
			}
			sums[ch] = s
		}
	})
	n := float64(cg * hw)
	mean := make([]float32, groups)
	for g := range groups {
		var s float64
		for _, v := range sums[g*cg : (g+1)*cg] {
			s += v
		}
		mean[g] = float32(s / n)
	}
	parallelFor(b.threads, c, grain, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var s float64
			row := xv[ch*hw : (ch+1)*hw]
			for i := 0; i < hw; i += sumBlockLen {
				s += sqDevBlock(row[i:min(i+sumBlockLen, hw)], mean[ch/cg])
			}
			sums[ch] = s
		}
	})
	inv := make([]float64, groups)
	for g := range groups {
		var s float64
		for _, v := range sums[g*cg : (g+1)*cg] {
			s += v
		}
		inv[g] = 1 / math.Sqrt(s/n+float64(eps))
	}
	if !silu {
		parallelFor(b.threads, c, grain, func(lo, hi int) {
			for ch := lo; ch < hi; ch++ {
				g := ch / cg
				// y = (x-mean)·(inv·w) + b
				affine(out.data[ch*hw:(ch+1)*hw], xv[ch*hw:(ch+1)*hw], mean[g], float32(inv[g]*float64(wv[ch])), bv[ch])
			}
		})
		return out
	}
	parallelFor(b.threads, c, grain, func(lo, hi int) {
		// y = (x-mean)·(inv·w) + b, then SiLU on runs of
		// siluChunk values while they are in L1. The runs start at the
		// task's first value, so only its very last values take SiLU's
		// scalar tail, as in a plain SiLU over the same range.
		for i := lo * hw; i < hi*hw; i += siluChunk {
			j := min(i+siluChunk, hi*hw)
			for p := i; p < j; {
				ch := p / hw
				q := min(j, (ch+1)*hw)
				g := ch / cg
				affine(out.data[p:q], xv[p:q], mean[g], float32(inv[g]*float64(wv[ch])), bv[ch])
				p = q
			}
			siluVec(out.data[i:j], out.data[i:j])
		}
	})
	return out
}

// sumBlockLen is the run of values summed in float32 lanes before the
// total moves to float64 (64 values per lane: error ≲ 64 ulp of a partial,
// far below what the float64 total and the fixtures notice).
const sumBlockLen = 1024
