// Package computetest holds test helpers for code that runs on a
// compute.Backend.
package computetest

import "github.com/zimage/zimage/zimage/compute"

// Observed wraps a Backend and passes every tensor a compute op returns
// through OnResult (nil: unchanged), so a test can account for activation
// memory without re-listing the op set. Weight, FromHost, ToHost, Free and
// Reshape (views) are not observed: a wrapper that cares overrides them.
type Observed struct {
	compute.Backend
	OnResult func(compute.Tensor) compute.Tensor
}

func (o *Observed) seen(t compute.Tensor) compute.Tensor {
	if o.OnResult == nil {
		return t
	}
	return o.OnResult(t)
}

// MatMul observes the result of the wrapped MatMul.
func (o *Observed) MatMul(x, w, bias compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.MatMul(x, w, bias))
}

// Attention observes the result of the wrapped Attention.
func (o *Observed) Attention(q, k, v compute.Tensor, heads, kvHeads int, scale float32, causal bool) compute.Tensor {
	return o.seen(o.Backend.Attention(q, k, v, heads, kvHeads, scale, causal))
}

// RMSNorm observes the result of the wrapped RMSNorm.
func (o *Observed) RMSNorm(x, w compute.Tensor, eps float32) compute.Tensor {
	return o.seen(o.Backend.RMSNorm(x, w, eps))
}

// LayerNorm observes the result of the wrapped LayerNorm.
func (o *Observed) LayerNorm(x compute.Tensor, eps float32) compute.Tensor {
	return o.seen(o.Backend.LayerNorm(x, eps))
}

// GroupNorm observes the result of the wrapped GroupNorm.
func (o *Observed) GroupNorm(x, w, b compute.Tensor, groups int, eps float32) compute.Tensor {
	return o.seen(o.Backend.GroupNorm(x, w, b, groups, eps))
}

// RoPE observes the result of the wrapped RoPE.
func (o *Observed) RoPE(x, cos, sin compute.Tensor, heads int, interleaved bool) compute.Tensor {
	return o.seen(o.Backend.RoPE(x, cos, sin, heads, interleaved))
}

// SiLU observes the result of the wrapped SiLU.
func (o *Observed) SiLU(x compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.SiLU(x))
}

// SwiGLU observes the result of the wrapped SwiGLU.
func (o *Observed) SwiGLU(gate, up compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.SwiGLU(gate, up))
}

// Add observes the result of the wrapped Add.
func (o *Observed) Add(a, b compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.Add(a, b))
}

// Scale observes the result of the wrapped Scale.
func (o *Observed) Scale(x compute.Tensor, s, c float32) compute.Tensor {
	return o.seen(o.Backend.Scale(x, s, c))
}

// Modulate observes the result of the wrapped Modulate.
func (o *Observed) Modulate(x, scale compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.Modulate(x, scale))
}

// GatedAdd observes the result of the wrapped GatedAdd.
func (o *Observed) GatedAdd(x, y, gate compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.GatedAdd(x, y, gate))
}

// Conv2D observes the result of the wrapped Conv2D.
func (o *Observed) Conv2D(x, w, bias compute.Tensor, pad int) compute.Tensor {
	return o.seen(o.Backend.Conv2D(x, w, bias, pad))
}

// Upsample2x observes the result of the wrapped Upsample2x.
func (o *Observed) Upsample2x(x compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.Upsample2x(x))
}

// Transpose observes the result of the wrapped Transpose.
func (o *Observed) Transpose(x compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.Transpose(x))
}

// Embedding observes the result of the wrapped Embedding.
func (o *Observed) Embedding(table compute.Tensor, ids []int) compute.Tensor {
	return o.seen(o.Backend.Embedding(table, ids))
}

// Rows observes the result of the wrapped Rows.
func (o *Observed) Rows(x compute.Tensor, start, end int) compute.Tensor {
	return o.seen(o.Backend.Rows(x, start, end))
}

// Concat observes the result of the wrapped Concat.
func (o *Observed) Concat(ts ...compute.Tensor) compute.Tensor {
	return o.seen(o.Backend.Concat(ts...))
}

// Repeat observes the result of the wrapped Repeat.
func (o *Observed) Repeat(row compute.Tensor, n int) compute.Tensor {
	return o.seen(o.Backend.Repeat(row, n))
}

// Slice observes the result of the wrapped Slice.
func (o *Observed) Slice(x compute.Tensor, start, end int) compute.Tensor {
	return o.seen(o.Backend.Slice(x, start, end))
}
