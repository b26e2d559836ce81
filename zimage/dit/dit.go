// Package dit is the Z-Image diffusion transformer (ZImageTransformer2DModel):
// a single-stream DiT over [image tokens, caption tokens] with 3-axis
// interleaved RoPE, sandwich RMSNorms and tanh-gated adaLN scale modulation.
// Spec §2.3 (a)–(h).
package dit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// Constants of the reference code (not in config.json).
const (
	FreqEmbedDim = 256  // sinusoidal timestep features
	TMLPMidDim   = 1024 // t_embedder.mlp hidden width
	finalLNEps   = 1e-6 // FinalLayer LayerNorm
	qkNormEps    = 1e-5 // per-head q/k RMSNorm (fixed in the reference, not norm_eps)
)

// Model is the DiT bound to a backend.
type Model struct {
	cfg    weights.DiTConfig
	b      compute.Backend
	ld     *nn.Loader
	embKey string // "<p>-<pf>", the all_x_embedder / all_final_layer key

	tMLP0W, tMLP0B compute.Tensor // t_embedder.mlp.0 [1024, 256], [1024]
	tMLP2W, tMLP2B compute.Tensor // t_embedder.mlp.2 [A, 1024], [A]  (A = adaLN width)
	xEmbW, xEmbB   compute.Tensor // all_x_embedder.<key> [dim, P·P·C], [dim]
	xPad, capPad   compute.Tensor // x_pad_token, cap_pad_token [1, dim]
	capNorm        compute.Tensor // cap_embedder.0.weight [capdim]
	capW, capB     compute.Tensor // cap_embedder.1 [dim, capdim], [dim]
	finModW        compute.Tensor // all_final_layer.<key>.adaLN_modulation.1 [dim, A]
	finModB        compute.Tensor // [dim]
	finW, finB     compute.Tensor // all_final_layer.<key>.linear [P·P·C, dim], [P·P·C]

	noiseRefiner   []*block // modulated, image tokens only
	contextRefiner []*block // unmodulated, caption tokens only
	layers         []*block // modulated, unified sequence

	lora map[compute.Tensor][]LoRA // run-time LoRA updates by weight handle (lora.go)

	steps *stepCache // PrepareTimesteps (timesteps.go)

	// rope caches the RoPE tables of the last layout: every step of a
	// generation uses the same ones (~140K float64 sin/cos at 512², run
	// serially while the other threads wait).
	rope struct {
		sync.Mutex
		lay      Layout
		cos, sin []float32
	}
}

// block is one ZImageTransformerBlock (P = noise_refiner.i, context_refiner.i or layers.i).
type block struct {
	modW, modB           compute.Tensor // P.adaLN_modulation.0 [4·dim, A], [4·dim]; nil when unmodulated
	attnNorm1, attnNorm2 compute.Tensor // P.attention_norm{1,2}.weight [dim]
	ffnNorm1, ffnNorm2   compute.Tensor // P.ffn_norm{1,2}.weight [dim]
	q, k, v, o           compute.Tensor // P.attention.to_{q,k,v}, to_out.0 [H·hd, dim]... [dim, H·hd]
	normQ, normK         compute.Tensor // P.attention.norm_{q,k}.weight [hd]; nil without qk_norm
	w1, w3, w2           compute.Tensor // P.feed_forward.w{1,3} [F, dim], w2 [dim, F]
}

// ConfigError reports a config value the DiT cannot run with.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("dit: config %s: %s", e.Field, e.Reason) }

func checkConfig(c weights.DiTConfig) error {
	switch {
	case len(c.AllPatchSize) != 1 || c.AllPatchSize[0] <= 0:
		return &ConfigError{"all_patch_size", fmt.Sprintf("%v: exactly one positive patch size is supported", c.AllPatchSize)}
	case len(c.AllFPatchSize) != 1 || c.AllFPatchSize[0] != 1:
		return &ConfigError{"all_f_patch_size", fmt.Sprintf("%v: only [1] is supported (single frame)", c.AllFPatchSize)}
	case c.InChannels <= 0:
		return &ConfigError{"in_channels", "must be positive"}
	case c.Dim <= 0 || c.NHeads <= 0 || c.Dim%c.NHeads != 0:
		return &ConfigError{"n_heads", fmt.Sprintf("dim %d is not a multiple of %d heads", c.Dim, c.NHeads)}
	case c.HeadDim()%2 != 0:
		return &ConfigError{"n_heads", "head_dim must be even"}
	case len(c.AxesDims) != 3 || len(c.AxesLens) != 3:
		return &ConfigError{"axes_dims", "need three RoPE axes (t, h, w)"}
	case c.CapFeatDim <= 0:
		return &ConfigError{"cap_feat_dim", "must be positive"}
	case c.RopeTheta <= 0:
		return &ConfigError{"rope_theta", "must be positive"}
	case c.NLayers < 0 || c.NRefinerLayers < 0:
		return &ConfigError{"n_layers", "must not be negative"}
	}
	sum := 0
	for _, d := range c.AxesDims {
		if d <= 0 || d%2 != 0 {
			return &ConfigError{"axes_dims", fmt.Sprintf("%v: every axis needs a positive even size", c.AxesDims)}
		}
		sum += d
	}
	if sum != c.HeadDim() {
		return &ConfigError{"axes_dims", fmt.Sprintf("%v sums to %d, head_dim is %d", c.AxesDims, sum, c.HeadDim())}
	}
	return nil
}

// New binds the DiT tensors (diffusers names) from src. Like the reference,
// n_kv_heads is ignored: k and v have n_heads heads.
func New(b compute.Backend, cfg weights.DiTConfig, src nn.Source) (*Model, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	D, A, P, C := cfg.Dim, cfg.AdaLNDim(), cfg.PatchSize(), cfg.InChannels
	m := &Model{cfg: cfg, b: b, ld: nn.NewLoader(b, src)}
	m.embKey = strconv.Itoa(P) + "-" + strconv.Itoa(cfg.AllFPatchSize[0])
	ld := m.ld
	t := ld.Sub("t_embedder.mlp")
	m.tMLP0W, m.tMLP0B = t.Get("0.weight", TMLPMidDim, FreqEmbedDim), t.Get("0.bias", TMLPMidDim)
	m.tMLP2W, m.tMLP2B = t.Get("2.weight", A, TMLPMidDim), t.Get("2.bias", A)
	x := ld.Sub("all_x_embedder." + m.embKey)
	m.xEmbW, m.xEmbB = x.Get("weight", D, P*P*C), x.Get("bias", D)
	m.xPad = ld.Loose("x_pad_token", 1, D)
	m.capPad = ld.Loose("cap_pad_token", 1, D)
	m.capNorm = ld.Get("cap_embedder.0.weight", cfg.CapFeatDim)
	m.capW, m.capB = ld.Get("cap_embedder.1.weight", D, cfg.CapFeatDim), ld.Get("cap_embedder.1.bias", D)
	f := ld.Sub("all_final_layer." + m.embKey)
	m.finModW, m.finModB = f.Get("adaLN_modulation.1.weight", D, A), f.Get("adaLN_modulation.1.bias", D)
	m.finW, m.finB = f.Get("linear.weight", P*P*C, D), f.Get("linear.bias", P*P*C)
	for i := 0; i < cfg.NRefinerLayers; i++ {
		m.noiseRefiner = append(m.noiseRefiner, m.bindBlock(ld.Sub("noise_refiner."+strconv.Itoa(i)), true))
		m.contextRefiner = append(m.contextRefiner, m.bindBlock(ld.Sub("context_refiner."+strconv.Itoa(i)), false))
	}
	for i := 0; i < cfg.NLayers; i++ {
		m.layers = append(m.layers, m.bindBlock(ld.Sub("layers."+strconv.Itoa(i)), true))
	}
	if err := ld.Err(); err != nil {
		ld.Free()
		return nil, fmt.Errorf("dit: %w", err)
	}
	return m, nil
}

func (m *Model) bindBlock(p *nn.Loader, modulated bool) *block {
	c := m.cfg
	D, H, hd, F, A := c.Dim, c.NHeads, c.HeadDim(), c.FFNDim(), c.AdaLNDim()
	bl := &block{
		attnNorm1: p.Get("attention_norm1.weight", D),
		attnNorm2: p.Get("attention_norm2.weight", D),
		ffnNorm1:  p.Get("ffn_norm1.weight", D),
		ffnNorm2:  p.Get("ffn_norm2.weight", D),
		q:         p.Get("attention.to_q.weight", H*hd, D),
		k:         p.Get("attention.to_k.weight", H*hd, D),
		v:         p.Get("attention.to_v.weight", H*hd, D),
		o:         p.Get("attention.to_out.0.weight", D, H*hd),
		w1:        p.Get("feed_forward.w1.weight", F, D),
		w3:        p.Get("feed_forward.w3.weight", F, D),
		w2:        p.Get("feed_forward.w2.weight", D, F),
	}
	if c.QKNorm == nil || *c.QKNorm {
		bl.normQ = p.Get("attention.norm_q.weight", hd)
		bl.normK = p.Get("attention.norm_k.weight", hd)
	}
	if modulated {
		bl.modW = p.Get("adaLN_modulation.0.weight", 4*D, A)
		bl.modB = p.Get("adaLN_modulation.0.bias", 4*D)
	}
	return bl
}

// ProductWeights returns the weights of the per-token products — every
// block's attention projections and feed-forward — which a backend may
// keep in a pre-packed form (cpu.Backend.Prepack).
func (m *Model) ProductWeights() []compute.Tensor {
	var ws []compute.Tensor
	for _, bls := range [][]*block{m.noiseRefiner, m.contextRefiner, m.layers} {
		for _, bl := range bls {
			ws = append(ws, bl.q, bl.k, bl.v, bl.o, bl.w1, bl.w3, bl.w2)
		}
	}
	return ws
}

// Config returns the configuration the model was built with.
func (m *Model) Config() weights.DiTConfig { return m.cfg }

// Close releases the backend handles (the checkpoint Set is the caller's).
func (m *Model) Close() {
	m.ReleaseTimesteps()
	if m.ld != nil {
		m.ld.Free()
		m.ld = nil
	}
}

// Caption is a caption prepared for denoising: embedded, padded with
// cap_pad_token and run through the context refiners. Those depend on the
// caption alone (no timestep), so one Caption serves every step.
type Caption struct {
	b      compute.Backend
	N, Lcp int
	tokens compute.Tensor // [Lcp, dim]
}

// Free releases the caption's tokens.
func (c *Caption) Free() {
	if c != nil && c.tokens != nil {
		c.b.Free(c.tokens)
		c.tokens = nil
	}
}

// PrepareCaption embeds the text-encoder features feats [n, cap_feat_dim]
// and runs the context refiners. tr receives "cap_embed" (before pad-token
// substitution), "context_refiner.in.x" and "context_refiner.<i>".
func (m *Model) PrepareCaption(ctx context.Context, feats []float32, n int, tr nn.Trace) (*Caption, error) {
	c := m.cfg
	if n <= 0 || len(feats) != n*c.CapFeatDim {
		return nil, &ShapeError{"caption", fmt.Sprintf("%d values for %d rows of %d features", len(feats), n, c.CapFeatDim)}
	}
	lay, err := NewLayout(c, c.PatchSize(), c.PatchSize(), n) // caption part only; the latent size is irrelevant here
	if err != nil {
		return nil, err
	}
	b := m.b
	eps := float32(c.NormEps)

	capIn := b.FromHost(lay.PadCaption(feats, c.CapFeatDim), lay.Lcp, c.CapFeatDim) // [Lcp, capdim]
	cn := b.RMSNorm(capIn, m.capNorm, eps)                                          // [Lcp, capdim]
	ce := m.linear(cn, m.capW, m.capB)                                              // [Lcp, dim]
	b.Free(capIn, cn)
	tr.Emit("cap_embed", ce)
	x := m.substitutePads(ce, n, lay.Lcp, m.capPad) // [Lcp, dim]
	tr.Emit("context_refiner.in.x", x)

	cosH, sinH := RopeTables(c, lay.CaptionPositions())
	cos := b.FromHost(cosH, lay.Lcp, c.HeadDim()/2)
	sin := b.FromHost(sinH, lay.Lcp, c.HeadDim()/2)
	defer b.Free(cos, sin)
	for i, bl := range m.contextRefiner {
		y := m.block(bl, x, cos, sin, nil)
		b.Free(x)
		x = y
		tr.Emit("context_refiner."+strconv.Itoa(i), x)
		if err := m.check(ctx, x, "context_refiner."+strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}
	if err := b.Err(); err != nil {
		b.Free(x)
		return nil, fmt.Errorf("dit: caption: %w", err)
	}
	return &Caption{b: b, N: n, Lcp: lay.Lcp, tokens: x}, nil
}

// check returns the backend's sticky error or ctx's, freeing x on either.
func (m *Model) check(ctx context.Context, x compute.Tensor, where string) error {
	if err := m.b.Err(); err != nil {
		m.b.Free(x)
		return fmt.Errorf("dit: %s: %w", where, err)
	}
	if err := ctx.Err(); err != nil {
		m.b.Free(x)
		return err
	}
	return nil
}

// substitutePads returns rows [0, n) of x followed by (rows−n) copies of pad;
// x itself is consumed.
func (m *Model) substitutePads(x compute.Tensor, n, rows int, pad compute.Tensor) compute.Tensor {
	if n == rows {
		return x
	}
	b := m.b
	head := b.Rows(x, 0, n)       // [n, dim]
	pads := b.Repeat(pad, rows-n) // [rows-n, dim]
	out := b.Concat(head, pads)   // [rows, dim]
	b.Free(x, head, pads)
	return out
}

// TimestepEmbedding runs the t-embedder for DiT time t (= 1 − σ; scaled by
// t_scale inside) → adaLN input [1, A].
func (m *Model) TimestepEmbedding(t float32) compute.Tensor {
	b := m.b
	e := b.FromHost(TimestepFeatures(t, m.cfg.TScale, FreqEmbedDim), 1, FreqEmbedDim) // [1, 256]
	h := m.linear(e, m.tMLP0W, m.tMLP0B)                                              // [1, 1024]
	hs := b.SiLU(h)
	out := m.linear(hs, m.tMLP2W, m.tMLP2B) // [1, A]
	b.Free(e, h, hs)
	return out
}

// Forward runs one DiT call for the latent x [C, hl, wl] at DiT time t with a
// prepared caption and returns the model output [C, hl, wl] (= x0 − ε; the
// pipeline negates it). tr receives "t_emb", "x_embed", "noise_refiner.in.x",
// "noise_refiner.<i>", "layers.in.x", "layers.<i>", "final_layer".
// ctx is checked after every block.
func (m *Model) Forward(ctx context.Context, x []float32, hl, wl int, t float32, cap *Caption, tr nn.Trace) ([]float32, error) {
	return m.ForwardHook(ctx, x, hl, wl, t, cap, nil, tr)
}

// ForwardHook is Forward with an optional Hook (a ControlNet) that sees the
// step's state before the main layers and adds residuals after them.
func (m *Model) ForwardHook(ctx context.Context, x []float32, hl, wl int, t float32, cap *Caption, hook Hook, tr nn.Trace) ([]float32, error) {
	c := m.cfg
	if cap == nil || cap.tokens == nil {
		return nil, &ShapeError{"caption", "not prepared"}
	}
	lay, err := NewLayout(c, hl, wl, cap.N)
	if err != nil {
		return nil, err
	}
	if len(x) != c.InChannels*hl*wl {
		return nil, &ShapeError{"latent", fmt.Sprintf("%d values, want %d×%d×%d", len(x), c.InChannels, hl, wl)}
	}
	b := m.b
	hd := c.HeadDim()

	// (a) timestep embedding and every block's modulation (constant over the call).
	st := m.stepFor(t)                 // nil unless PrepareTimesteps holds t
	temb := m.timestepEmbedding(t, st) // [1, A]
	tr.Emit("t_emb", temb)
	defer b.Free(temb)

	// (b) patchify + embed; pad rows become x_pad_token.
	patches := b.FromHost(lay.Patchify(x), lay.Nip, lay.PatchDim()) // [Nip, P·P·C]
	xe := m.linear(patches, m.xEmbW, m.xEmbB)                       // [Nip, dim]
	b.Free(patches)
	tr.Emit("x_embed", xe)
	h := m.substitutePads(xe, lay.Ni, lay.Nip, m.xPad) // [Nip, dim]
	tr.Emit("noise_refiner.in.x", h)

	// (d) RoPE tables for the image tokens and the unified sequence.
	cosH, sinH := m.ropeTables(lay)
	L := lay.Nip + lay.Lcp
	cos := b.FromHost(cosH, L, hd/2) // [Nip+Lcp, hd/2]
	sin := b.FromHost(sinH, L, hd/2)
	cosImg, sinImg := b.Rows(cos, 0, lay.Nip), b.Rows(sin, 0, lay.Nip) // [Nip, hd/2]
	defer b.Free(cos, sin, cosImg, sinImg)

	if hook != nil {
		st := &Step{Layout: lay, Temb: temb, X: h, Cos: cos, Sin: sin, CosImg: cosImg, SinImg: sinImg, Caption: cap}
		defer hook.End()
		if err := hook.Begin(ctx, st); err != nil {
			b.Free(h)
			return nil, err
		}
	}

	// Noise refiners on the image tokens.
	for i, bl := range m.noiseRefiner {
		y := m.blockRows(bl, h, cosImg, sinImg, temb, lay.Nip, st)
		b.Free(h)
		h = y
		tr.Emit("noise_refiner."+strconv.Itoa(i), h)
		if err := m.check(ctx, h, "noise_refiner."+strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}

	// (h) unified [image, caption] sequence through the main layers.
	u := b.Concat(h, cap.tokens) // [L, dim]
	b.Free(h)
	tr.Emit("layers.in.x", u)
	for i, bl := range m.layers {
		// The last layer's caption rows are never read (the final layer takes
		// the image rows): unless tracing, it computes only the Nip image rows
		// past its keys and values — the same bits for those rows.
		rows := L
		if tr == nil && i == len(m.layers)-1 {
			rows = lay.Nip
		}
		y := m.blockRows(bl, u, cos, sin, temb, rows, st) // [rows, dim]
		b.Free(u)
		u = y
		if hook != nil {
			if r := hook.Residual(i); r != nil { // ControlNet hint, already scaled
				if rows < L {
					r = b.Rows(r, 0, rows)
					defer b.Free(r)
				}
				y = b.Add(u, r)
				b.Free(u)
				u = y
			}
		}
		tr.Emit("layers."+strconv.Itoa(i), u)
		if err := m.check(ctx, u, "layers."+strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}

	// Final layer: LayerNorm (no affine) · (1 + Linear(SiLU(t_emb))), then Linear.
	img := u // [L, dim] when tracing, like the reference computes it
	if tr == nil && lay.Ni < u.Shape()[0] {
		img = b.Rows(u, 0, lay.Ni) // [Ni, dim]: only image rows are read back
	}
	var scale compute.Tensor // [1, dim]
	if st != nil {
		scale = st.rows(b, st.c.fin)
	} else {
		ts := b.SiLU(temb)
		scale = m.linear(ts, m.finModW, m.finModB)
		b.Free(ts)
	}
	ln := b.LayerNorm(img, finalLNEps) // [Ni|L, dim]
	mod := b.Modulate(ln, b.Reshape(scale, c.Dim))
	y := m.linear(mod, m.finW, m.finB) // [Ni|L, P·P·C]
	b.Free(scale, ln, mod)
	if img != u {
		b.Free(img)
	}
	b.Free(u)
	tr.Emit("final_layer", y)
	out := b.ToHost(y)
	b.Free(y)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("dit: final layer: %w", err)
	}
	return lay.Unpatchify(out), nil
}

// ropeTables returns the RoPE tables of the unified [image, caption]
// sequence of lay (read only; cached for the next call with the same lay).
func (m *Model) ropeTables(lay Layout) (cos, sin []float32) {
	m.rope.Lock()
	defer m.rope.Unlock()
	if m.rope.cos == nil || m.rope.lay != lay {
		imgPos := lay.ImagePositions()
		pos := append(imgPos[:len(imgPos):len(imgPos)], lay.CaptionPositions()...)
		m.rope.cos, m.rope.sin = RopeTables(m.cfg, pos)
		m.rope.lay = lay
	}
	return m.rope.cos, m.rope.sin
}

// block runs one transformer block on x [L, dim]; temb nil means unmodulated
// (context refiner). Returns the new residual stream; x is not freed.
func (m *Model) block(bl *block, x, cos, sin, temb compute.Tensor) compute.Tensor {
	return m.blockRows(bl, x, cos, sin, temb, x.Shape()[0], nil)
}

// blockRows is block returning only the first rows rows of the new residual
// stream [rows, dim]: every row still feeds the keys and values, but the
// queries, the output projection and the FFN run on those rows alone. Each
// row's result is the same bits as block's. st (may be nil) holds the
// step's prepared modulation.
func (m *Model) blockRows(bl *block, x, cos, sin, temb compute.Tensor, rows int, st *stepRow) compute.Tensor {
	b := m.b
	c := m.cfg
	D := c.Dim
	eps := float32(c.NormEps)

	var sAttn, gAttn, sFFN, gFFN compute.Tensor // [D] views; nil when unmodulated
	if bl.modW != nil {
		mod := m.modulation(bl, temb, st) // [1, 4·D]: scale_msa | gate_msa | scale_mlp | gate_mlp
		chunks := [4]compute.Tensor{}
		for i := range chunks {
			chunks[i] = b.Slice(mod, i*D, (i+1)*D) // [1, D]
		}
		b.Free(mod)
		defer b.Free(chunks[:]...)
		sAttn, gAttn = b.Reshape(chunks[0], D), b.Reshape(chunks[1], D)
		sFFN, gFFN = b.Reshape(chunks[2], D), b.Reshape(chunks[3], D)
	}

	// Attention branch: x += tanh(g)·RMSNorm2(Attn(RMSNorm1(x)·(1+s))).
	n1 := fused.RMSNormModulate(b, x, bl.attnNorm1, sAttn, eps) // [L, D]; nil scale = norm only
	a := m.attention(bl, n1, cos, sin, rows)                    // [rows, D]
	b.Free(n1)
	xr := x // [rows, D]
	if rows < x.Shape()[0] {
		xr = b.Rows(x, 0, rows)
		defer b.Free(xr)
	}
	x1 := fused.RMSNormGatedAdd(b, xr, a, bl.attnNorm2, gAttn, eps) // [rows, D]; nil gate = plain residual
	b.Free(a)

	// FFN branch: x += tanh(g)·RMSNorm2'(W2(silu(W1 h) ⊙ W3 h)), h = RMSNorm1'(x)·(1+s).
	n2 := fused.RMSNormModulate(b, x1, bl.ffnNorm1, sFFN, eps)
	gu := m.linears(n2, bl.w1, bl.w3) // [rows, F] each
	g, u := gu[0], gu[1]
	b.Free(n2)
	s := b.SwiGLU(g, u)
	b.Free(g, u)
	f := m.linear(s, bl.w2, nil) // [L, D]
	b.Free(s)
	out := fused.RMSNormGatedAdd(b, x1, f, bl.ffnNorm2, gFFN, eps)
	b.Free(x1, f)
	return out
}

// attention is the block's self-attention on h [L, D]: projections, per-head
// q/k RMSNorm, interleaved RoPE, full (unmasked) softmax attention, output
// projection — for the queries of h's first rows rows ([rows, D]).
func (m *Model) attention(bl *block, h, cos, sin compute.Tensor, rows int) compute.Tensor {
	b := m.b
	c := m.cfg
	H, hd := c.NHeads, c.HeadDim()
	L := h.Shape()[0]
	var q, k, v compute.Tensor // [rows|L, H·hd]
	cosQ, sinQ := cos, sin     // [rows, hd/2]
	if rows == L {
		qkv := m.linears(h, bl.q, bl.k, bl.v)
		q, k, v = qkv[0], qkv[1], qkv[2]
	} else {
		kv := m.linears(h, bl.k, bl.v)
		k, v = kv[0], kv[1]
		hq := b.Rows(h, 0, rows)
		q = m.linear(hq, bl.q, nil)
		cosQ, sinQ = b.Rows(cos, 0, rows), b.Rows(sin, 0, rows)
		b.Free(hq)
		defer b.Free(cosQ, sinQ)
	}
	var qr, kr compute.Tensor
	if bl.normQ != nil {
		// per-head norm, then interleaved-pair rotation
		qr = fused.HeadRMSNormRoPE(b, q, bl.normQ, cosQ, sinQ, H, qkNormEps, true)
		kr = fused.HeadRMSNormRoPE(b, k, bl.normK, cos, sin, H, qkNormEps, true)
	} else {
		qr = b.RoPE(b.Reshape(q, rows, H*hd), cosQ, sinQ, H, true) // interleaved pairs
		kr = b.RoPE(b.Reshape(k, L, H*hd), cos, sin, H, true)
	}
	b.Free(q, k)
	scale := float32(1 / math.Sqrt(float64(hd)))
	a := b.Attention(qr, kr, v, H, H, scale, false) // [rows, H·hd]
	b.Free(qr, kr, v)
	out := m.linear(a, bl.o, nil) // [rows, D]
	b.Free(a)
	return out
}
