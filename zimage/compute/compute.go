// Package compute is the small tensor interface that the Z-Image networks are
// written against once. A Backend (the pure-Go CPU backend in zimage/cpu, the
// CUDA backend in package cuda) owns tensor memory and implements the op set.
//
// Conventions shared by every op:
//   - Tensors are dense and row-major. Token sequences are [L, D] (one row per
//     token); multi-head tensors are [L, H*Dh] with head h in columns
//     h*Dh..h*Dh+Dh-1. Feature maps are [C, H, W] (batch 1).
//   - Weights use the checkpoint's layout: a Linear weight is [out, in] and
//     MatMul computes x·Wᵀ. A conv weight is [Co, Ci, kh, kw].
//   - Activations are float32 on the CPU backend; a GPU backend may keep them
//     in bfloat16 with float32 accumulation and float32 norm statistics.
//     ToHost always returns float32.
//   - Errors are sticky: the first failing op records its error (Err), and
//     every later op returns a placeholder without computing, so graph code
//     is straight-line and checks Err at stage boundaries.
//   - Every op returns a new tensor that the caller owns and must Free; views
//     (Reshape) share storage with their source and must not outlive it.
//   - Cancellation: a backend that implements Cancellable is given each
//     request's context; once it is done, long ops stop part-way and the
//     backend records ctx.Err() as its sticky error.
package compute

import (
	"context"
	"fmt"

	"github.com/zimage/zimage/weights"
)

// Tensor is a backend-owned tensor handle.
type Tensor interface {
	Shape() []int
	DType() weights.DType
}

// Numel returns the number of elements of t.
func Numel(t Tensor) int {
	n := 1
	for _, d := range t.Shape() {
		n *= d
	}
	return n
}

// Backend implements the op set the three networks need.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda").
	Name() string
	// Err returns the first error recorded by any op since the last ResetErr.
	Err() error
	// ResetErr clears the sticky error (after a cancelled or failed call, so
	// the pipeline stays usable).
	ResetErr()

	// Weight makes a checkpoint tensor usable by the ops, keeping its storage
	// dtype where the backend computes on it directly (the CPU backend wraps
	// the mmap'd bytes without copying). The result is owned by the caller.
	Weight(w *weights.Tensor) Tensor
	// FromHost copies float32 host data into a new activation tensor.
	FromHost(data []float32, shape ...int) Tensor
	// ToHost copies a tensor to the host as float32.
	ToHost(t Tensor) []float32
	// Free releases t's storage (a no-op for views and after errors).
	Free(ts ...Tensor)

	// Reshape returns a view of t with a new shape of the same element count.
	Reshape(t Tensor, shape ...int) Tensor

	// MatMul returns x·Wᵀ (+ bias): x [M, K], w [N, K], bias [N] or nil → [M, N].
	MatMul(x, w, bias Tensor) Tensor

	// Attention is fused scaled-dot-product attention with online softmax
	// (no [Lq, Lk] score matrix). q [Lq, heads*dh], k and v [Lk, kvHeads*dh];
	// query head h uses key/value head h/(heads/kvHeads) (grouped-query).
	// causal masks key j > query i. Scores are scaled by scale. → [Lq, heads*dh].
	Attention(q, k, v Tensor, heads, kvHeads int, scale float32, causal bool) Tensor

	// RMSNorm normalises each row of x [M, D] over D: x·rsqrt(mean(x²)+eps)·w
	// with float32 statistics; w [D] may be nil (no gain).
	RMSNorm(x, w Tensor, eps float32) Tensor
	// LayerNorm normalises each row of x [M, D] over D without affine
	// parameters: (x-mean)·rsqrt(var+eps), biased variance.
	LayerNorm(x Tensor, eps float32) Tensor
	// GroupNorm normalises x [C, H, W] in groups of C/groups channels over
	// (C/groups)·H·W values, biased variance, then ·w[c] + b[c].
	GroupNorm(x, w, b Tensor, groups int, eps float32) Tensor

	// RoPE rotates each head of x [L, heads*dh] by the angles whose cosines
	// and sines are cos, sin [L, dh/2]. interleaved=false is the half-split
	// (NeoX, Qwen3) form: pair (j, j+dh/2) uses angle j. interleaved=true is
	// the complex-pair form (Z-Image DiT): pair (2j, 2j+1) uses angle j.
	RoPE(x, cos, sin Tensor, heads int, interleaved bool) Tensor

	// SiLU returns x·sigmoid(x) elementwise.
	SiLU(x Tensor) Tensor
	// SwiGLU returns silu(gate) ⊙ up (same shapes).
	SwiGLU(gate, up Tensor) Tensor
	// Add returns a + b (same shapes).
	Add(a, b Tensor) Tensor
	// Scale returns x·s + c elementwise.
	Scale(x Tensor, s, c float32) Tensor
	// Modulate returns x ⊙ (1 + scale) with scale [D] broadcast over the rows
	// of x [M, D].
	Modulate(x, scale Tensor) Tensor
	// GatedAdd returns x + tanh(gate) ⊙ y with gate [D] broadcast over the
	// rows of x, y [M, D]. A nil gate means a gate of 1 (plain residual add).
	GatedAdd(x, y, gate Tensor) Tensor

	// Conv2D is a stride-1 2-D cross-correlation with zero padding pad:
	// x [Ci, H, W], w [Co, Ci, kh, kw], bias [Co] or nil → [Co, H', W'].
	Conv2D(x, w, bias Tensor, pad int) Tensor
	// Upsample2x is nearest-neighbour 2× upsampling: [C, H, W] → [C, 2H, 2W].
	Upsample2x(x Tensor) Tensor
	// Transpose returns the transpose of a 2-D tensor [R, C] → [C, R].
	Transpose(x Tensor) Tensor

	// Embedding gathers rows ids of table [V, D] → [len(ids), D].
	Embedding(table Tensor, ids []int) Tensor
	// Rows returns a copy of rows [start, end) of x [M, ...].
	Rows(x Tensor, start, end int) Tensor
	// Concat stacks tensors along their first axis (other dims equal).
	Concat(ts ...Tensor) Tensor
	// Repeat stacks n copies of row [1, D] (or [D]) → [n, D].
	Repeat(row Tensor, n int) Tensor
	// Slice returns a copy of columns [start, end) of x [M, N] → [M, end-start].
	Slice(x Tensor, start, end int) Tensor
}

// Cancellable is implemented by backends whose ops observe a request's
// context (both the CPU and the CUDA backend do). After SetContext(ctx),
// once ctx is done, ops in progress abandon their work at their next
// internal check (between GEMM tasks, attention query blocks, conv row
// tiles, or kernel launches) and the backend records ctx.Err() as its
// sticky error, so the graph stops at its next Err check; every later op
// returns a placeholder until ResetErr. SetContext(nil) detaches the
// context. The pipeline sets it at the start of each request and clears it
// at the end; it is safe to call from any goroutine.
type Cancellable interface {
	SetContext(ctx context.Context)
}

// ShapeError reports an op called with incompatible shapes. Backends record
// it as their sticky error.
type ShapeError struct {
	Op     string
	Shapes [][]int
	Reason string
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("compute: %s: %s (shapes %v)", e.Op, e.Reason, e.Shapes)
}

// Shapes collects the shapes of ts for a ShapeError.
func Shapes(ts ...Tensor) [][]int {
	out := make([][]int, len(ts))
	for i, t := range ts {
		if t != nil {
			out[i] = t.Shape()
		}
	}
	return out
}
