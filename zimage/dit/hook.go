package dit

import (
	"context"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// Hook lets a ControlNet take part in one ForwardHook call: Begin sees the
// step's state once the image tokens are embedded (before the noise
// refiners) and computes its residuals; Residual(i) is added to the unified
// stream after main layer i; End releases what Begin made. The upstream
// transformer does the same with its controlnet_block_samples.
type Hook interface {
	// Begin is called once per ForwardHook. s and its tensors belong to
	// the forward and are valid only during the call.
	Begin(ctx context.Context, s *Step) error
	// Residual returns the tensor [L, dim] (L = Nip + Lcp) to add after main
	// layer i, or nil. It stays owned by the hook.
	Residual(i int) compute.Tensor
	// End is called when the forward returns (also on errors, and when
	// Begin failed).
	End()
}

// Step is the state of one forward a Hook reads.
type Step struct {
	Layout         Layout
	Temb           compute.Tensor // adaLN input [1, A]
	X              compute.Tensor // embedded image tokens, pads = x_pad_token [Nip, dim]
	Cos, Sin       compute.Tensor // RoPE tables of the unified sequence [Nip+Lcp, hd/2]
	CosImg, SinImg compute.Tensor // RoPE tables of the image tokens [Nip, hd/2]
	Caption        *Caption
}

// CaptionTokens returns the caption's refined tokens [Lcp, dim] (owned by c).
func (c *Caption) CaptionTokens() compute.Tensor { return c.tokens }

// Block is a ZImageTransformerBlock with the DiT's sizes bound outside the
// DiT (BindBlock), for networks that reuse the block structure.
type Block struct{ bl *block }

// BindBlock binds a transformer block with the DiT's sizes from ld (its key
// prefix, e.g. "control_layers.0"); modulated says whether it has
// adaLN_modulation. The tensors belong to ld. For networks that reuse the
// DiT's block structure (the ControlNet's control blocks).
func (m *Model) BindBlock(ld *nn.Loader, modulated bool) *Block {
	return &Block{m.bindBlock(ld, modulated)}
}

// RunBlock runs bl on x [L, dim] with RoPE tables cos/sin [L, hd/2] and adaLN
// input temb (nil for an unmodulated block); x is not freed.
func (m *Model) RunBlock(bl *Block, x, cos, sin, temb compute.Tensor) compute.Tensor {
	return m.block(bl.bl, x, cos, sin, temb)
}

// NoiseRefiners is the number of noise-refiner blocks.
func (m *Model) NoiseRefiners() int { return len(m.noiseRefiner) }

// RunNoiseRefiner runs the DiT's noise refiner i on the image tokens x
// [Nip, dim] of step s; x is not freed.
func (m *Model) RunNoiseRefiner(i int, x compute.Tensor, s *Step) compute.Tensor {
	return m.block(m.noiseRefiner[i], x, s.CosImg, s.SinImg, s.Temb)
}

// PadImageTokens returns the first Ni rows of x [Nip, dim] followed by
// x_pad_token rows, as the embedded image tokens are padded; x is consumed.
func (m *Model) PadImageTokens(x compute.Tensor, lay Layout) compute.Tensor {
	return m.substitutePads(x, lay.Ni, lay.Nip, m.xPad)
}
