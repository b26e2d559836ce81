package controlnet

import (
	"context"
	"fmt"
	"strconv"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// Model is a ControlNet bound to a backend and to the DiT it steers. Like
// upstream's from_transformer, the t-embedder, x pad token, noise refiners
// and caption tokens are the DiT's; only the control blocks and the control
// patch embedder are the ControlNet's own.
type Model struct {
	cfg Config
	d   *dit.Model
	b   compute.Backend
	ld  *nn.Loader

	embW, embB compute.Tensor  // control_all_x_embedder.<p>-<pf> [dim, P·P·Cc], [dim]
	refiner    []*controlBlock // control_noise_refiner.i (v1: plain blocks; 2.1: control blocks)
	layers     []*controlBlock // control_layers.k, hint for main layer control_layers_places[k]
}

// controlBlock is a ZImageControlTransformerBlock: a DiT block plus
// before_proj (block_id 0 only) and after_proj (the hint). Plain v1
// refiner blocks have neither.
type controlBlock struct {
	blk            *dit.Block
	before, beforB compute.Tensor // P.before_proj [dim, dim], [dim]
	after, afterB  compute.Tensor // P.after_proj [dim, dim], [dim]
}

// New binds the ControlNet's tensors (checkpoint names) for the DiT d. The
// config must fit d's (Config.Check).
func New(b compute.Backend, cfg Config, d *dit.Model, src nn.Source) (*Model, error) {
	dc := d.Config()
	if err := cfg.Check(dc, dc.InChannels); err != nil {
		return nil, err
	}
	D := cfg.Dim
	m := &Model{cfg: cfg, d: d, b: b, ld: nn.NewLoader(b, src)}
	key := strconv.Itoa(cfg.AllPatchSize[0]) + "-" + strconv.Itoa(cfg.AllFPatchSize[0])
	pp := cfg.AllPatchSize[0] * cfg.AllPatchSize[0] * cfg.AllFPatchSize[0]
	e := m.ld.Sub("control_all_x_embedder." + key)
	m.embW, m.embB = e.Get("weight", D, pp*cfg.ControlInDim), e.Get("bias", D)
	bind := func(prefix string, withProj, first bool) *controlBlock {
		p := m.ld.Sub(prefix)
		cb := &controlBlock{blk: d.BindBlock(p, true)}
		if withProj {
			if first {
				cb.before, cb.beforB = p.Get("before_proj.weight", D, D), p.Get("before_proj.bias", D)
			}
			cb.after, cb.afterB = p.Get("after_proj.weight", D, D), p.Get("after_proj.bias", D)
		}
		return cb
	}
	for k := range cfg.ControlLayersPlaces {
		// block_id = place; only block_id 0 (validated to come first) has before_proj.
		m.layers = append(m.layers, bind("control_layers."+strconv.Itoa(k), true, k == 0))
	}
	switch cfg.Refiner() {
	case RefinerNone:
		for i := 0; i < cfg.NRefinerLayers; i++ {
			m.refiner = append(m.refiner, bind("control_noise_refiner."+strconv.Itoa(i), false, false))
		}
	case RefinerControlNoiseRefiner:
		for i := 0; i < cfg.NRefinerLayers; i++ {
			m.refiner = append(m.refiner, bind("control_noise_refiner."+strconv.Itoa(i), true, i == 0))
		}
	}
	if err := m.ld.Err(); err != nil {
		m.ld.Free()
		return nil, fmt.Errorf("controlnet: %w", err)
	}
	return m, nil
}

// Config returns the ControlNet's config.
func (m *Model) Config() Config { return m.cfg }

// Close releases the backend handles (the checkpoint is the caller's).
func (m *Model) Close() {
	if m.ld != nil {
		m.ld.Free()
		m.ld = nil
	}
}

// ContextError reports a control context of the wrong size.
type ContextError struct{ Reason string }

func (e *ContextError) Error() string { return "controlnet: control context: " + e.Reason }

// Hook returns the dit.Hook that steers one forward with the control
// context cc [control_in_dim, hl, wl] (the VAE-encoded control image, see
// ControlContext) at conditioning scale: pass it to dit.ForwardHook. The
// hook may be reused for every step (and for both CFG passes).
func (m *Model) Hook(cc []float32, hl, wl int, scale float32) (*Hook, error) {
	if len(cc) != m.cfg.ControlInDim*hl*wl {
		return nil, &ContextError{fmt.Sprintf("%d values, want %d×%d×%d", len(cc), m.cfg.ControlInDim, hl, wl)}
	}
	return &Hook{m: m, cc: cc, hl: hl, wl: wl, scale: scale}, nil
}

// Hook is one control context at one scale, as a dit.Hook.
type Hook struct {
	m      *Model
	cc     []float32
	hl, wl int
	scale  float32
	// Trace, when set, receives "control_embed", "control_noise_refiner.<i>"
	// (the stacked-off control tokens), "refiner_hint.<i>" (scaled),
	// "noise_refiner.<i>" (the ControlNet's own pass), "hint.<place>"
	// (scaled).
	Trace nn.Trace

	hints map[int]compute.Tensor // main layer → scaled hint [L, dim]
}

// Context returns the control context [control_in_dim, hl, wl] the hook
// was made with.
func (h *Hook) Context() []float32 { return h.cc }

// Residual implements dit.Hook.
func (h *Hook) Residual(i int) compute.Tensor { return h.hints[i] }

// End implements dit.Hook.
func (h *Hook) End() {
	for _, t := range h.hints {
		h.m.b.Free(t)
	}
	h.hints = nil
}

// controlStep runs control block cb on c with the stream x it is tied to
// (block_id 0: c = before_proj(c) + x first). It returns the new control
// tokens and the unscaled hint after_proj(c'); c is consumed.
func (m *Model) controlStep(cb *controlBlock, c, x, cos, sin, temb compute.Tensor) (next, hint compute.Tensor) {
	b := m.b
	if cb.before != nil {
		p := b.MatMul(c, cb.before, cb.beforB) // [S, dim]
		s := b.Add(p, x)
		b.Free(c, p)
		c = s
	}
	next = m.d.RunBlock(cb.blk, c, cos, sin, temb) // [S, dim]
	b.Free(c)
	if cb.after != nil {
		hint = b.MatMul(next, cb.after, cb.afterB) // [S, dim]
	}
	return next, hint
}

// Begin implements dit.Hook: the ControlNet forward of upstream's
// ZImageControlNetModel for this step, leaving one scaled hint per place.
func (h *Hook) Begin(ctx context.Context, s *dit.Step) error {
	m, b := h.m, h.m.b
	cfg := m.cfg
	lay := s.Layout
	if lay.Hl != h.hl || lay.Wl != h.wl {
		return &ContextError{fmt.Sprintf("%d×%d latent cells, the forward has %d×%d", h.hl, h.wl, lay.Hl, lay.Wl)}
	}
	h.End()
	h.hints = map[int]compute.Tensor{}
	tr := h.Trace

	// Control tokens: patchify like the latents, embed, pads = x_pad_token.
	cl := lay
	cl.C = cfg.ControlInDim
	patches := b.FromHost(cl.Patchify(h.cc), lay.Nip, cl.PatchDim()) // [Nip, P·P·Cc]
	ce := b.MatMul(patches, m.embW, m.embB)                          // [Nip, dim]
	b.Free(patches)
	c := m.d.PadImageTokens(ce, lay) // [Nip, dim]
	tr.Emit("control_embed", c)

	// Refiner stage on the image tokens.
	var refHints []compute.Tensor // unscaled
	defer func() { b.Free(refHints...) }()
	switch cfg.Refiner() {
	case RefinerNone:
		for i, cb := range m.refiner {
			y := m.d.RunBlock(cb.blk, c, s.CosImg, s.SinImg, s.Temb)
			b.Free(c)
			c = y
			tr.Emit("control_noise_refiner."+strconv.Itoa(i), c)
		}
	default:
		blocks := m.refiner
		if cfg.Refiner() == RefinerControlLayers {
			blocks = m.layers
		}
		for i, cb := range blocks {
			var hint compute.Tensor
			c, hint = m.controlStep(cb, c, s.X, s.CosImg, s.SinImg, s.Temb)
			refHints = append(refHints, hint)
			tr.Emit("control_noise_refiner."+strconv.Itoa(i), c)
			if err := h.check(ctx, c); err != nil {
				return err
			}
		}
	}

	// The ControlNet's own pass through the DiT's noise refiners, with the
	// refiner hints (the DiT's pass has none).
	x := s.X
	own := false
	for i := 0; i < m.d.NoiseRefiners(); i++ {
		y := m.d.RunNoiseRefiner(i, x, s)
		if own {
			b.Free(x)
		}
		x, own = y, true
		for k, pl := range cfg.ControlRefinerLayersPlaces {
			if pl == i && k < len(refHints) {
				sh := b.Scale(refHints[k], h.scale, 0)
				tr.Emit("refiner_hint."+strconv.Itoa(i), sh)
				z := b.Add(x, sh)
				b.Free(x, sh)
				x = z
			}
		}
		tr.Emit("noise_refiner."+strconv.Itoa(i), x)
	}
	if !own {
		x = b.Rows(x, 0, lay.Nip) // a copy, so it can be freed like the others
	}

	// Main stage: control tokens ⧺ caption, tied to the unified sequence.
	capT := s.Caption.CaptionTokens()
	unified := b.Concat(x, capT) // [L, dim]
	cu := b.Concat(c, capT)      // [L, dim]
	b.Free(x, c)
	defer b.Free(unified)
	for k, cb := range m.layers {
		var hint compute.Tensor
		cu, hint = m.controlStep(cb, cu, unified, s.Cos, s.Sin, s.Temb)
		place := cfg.ControlLayersPlaces[k]
		h.hints[place] = b.Scale(hint, h.scale, 0)
		b.Free(hint)
		tr.Emit("hint."+strconv.Itoa(place), h.hints[place])
		if err := h.check(ctx, cu); err != nil {
			return err
		}
	}
	b.Free(cu)
	if err := b.Err(); err != nil {
		return fmt.Errorf("controlnet: %w", err)
	}
	return nil
}

// check returns the backend's sticky error or ctx's, freeing x on either.
func (h *Hook) check(ctx context.Context, x compute.Tensor) error {
	if err := h.m.b.Err(); err != nil {
		h.m.b.Free(x)
		return fmt.Errorf("controlnet: %w", err)
	}
	if err := ctx.Err(); err != nil {
		h.m.b.Free(x)
		return err
	}
	return nil
}
