// Package vae is the decoder half of the FLUX AutoencoderKL used by Z-Image:
// latents [C, h, w] → RGB [3, 8h, 8w] in about [-1, 1], plus the reference's
// post-processing to 8-bit pixels. Spec §2.4 and §3.8.
package vae

import (
	"context"
	"fmt"
	"image"
	"math"
	"strconv"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// normEps is the GroupNorm epsilon of every decoder norm (diffusers resnet_eps).
const normEps = 1e-6

// Decoder is the VAE decoder bound to a backend.
type Decoder struct {
	block
	cfg weights.VAEConfig
	ld  *nn.Loader

	convInW, convInB compute.Tensor // decoder.conv_in [C0, latent, 3, 3], [C0]
	mid1, mid2       *resnet        // decoder.mid_block.resnets.{0,1}
	attn             *attention     // decoder.mid_block.attentions.0; nil without mid-block attention
	up               []*upBlock     // decoder.up_blocks.i, i = 0 lowest resolution
	normOutW         compute.Tensor // decoder.conv_norm_out [Clast]
	normOutB         compute.Tensor
	convOutW         compute.Tensor // decoder.conv_out [out, Clast, 3, 3]
	convOutB         compute.Tensor
}

// block runs the layers the encoder and decoder share on one backend.
type block struct {
	b      compute.Backend
	groups int // GroupNorm groups (norm_num_groups)
}

// resnet is a ResnetBlock2D: norm1 → SiLU → conv1 → norm2 → SiLU → conv2, plus
// a 1×1 conv_shortcut when the channel count changes.
type resnet struct {
	norm1W, norm1B compute.Tensor // [ci]
	conv1W, conv1B compute.Tensor // [co, ci, 3, 3], [co]
	norm2W, norm2B compute.Tensor // [co]
	conv2W, conv2B compute.Tensor // [co, co, 3, 3], [co]
	scW, scB       compute.Tensor // conv_shortcut [co, ci, 1, 1], [co]; nil when ci == co
}

// attention is the single-head mid-block self-attention with biases.
type attention struct {
	normW, normB compute.Tensor // group_norm [C]
	q, k, v, o   compute.Tensor // to_q, to_k, to_v, to_out.0 [C, C]
	qB, kB, vB   compute.Tensor // [C]
	oB           compute.Tensor
}

// upBlock is an UpDecoderBlock2D: layers_per_block+1 resnets, then an optional
// nearest 2× upsample + 3×3 conv.
type upBlock struct {
	resnets  []*resnet
	upW, upB compute.Tensor // upsamplers.0.conv [co, co, 3, 3], [co]; nil for the last block
}

// ConfigError reports a config value the decoder cannot run with.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("vae: config %s: %s", e.Field, e.Reason) }

func checkConfig(c weights.VAEConfig) error {
	if len(c.BlockOutChannels) == 0 {
		return &ConfigError{"block_out_channels", "empty"}
	}
	if c.NormNumGroups <= 0 {
		return &ConfigError{"norm_num_groups", "must be positive"}
	}
	for _, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return &ConfigError{"block_out_channels", fmt.Sprintf("%v: every width must be a positive multiple of norm_num_groups %d", c.BlockOutChannels, c.NormNumGroups)}
		}
	}
	switch {
	case c.LatentChannels <= 0:
		return &ConfigError{"latent_channels", "must be positive"}
	case c.OutChannels <= 0:
		return &ConfigError{"out_channels", "must be positive"}
	case c.LayersPerBlock < 0:
		return &ConfigError{"layers_per_block", "must not be negative"}
	case c.ScalingFactor == 0:
		return &ConfigError{"scaling_factor", "must not be zero"}
	case c.UsePostQuantConv:
		return &ConfigError{"use_post_quant_conv", "post_quant_conv is not supported (Z-Image/FLUX VAEs have none)"}
	case c.ActFn != "" && c.ActFn != "silu":
		return &ConfigError{"act_fn", fmt.Sprintf("%q is not supported (silu only)", c.ActFn)}
	}
	for i, t := range c.UpBlockTypes {
		if t != "UpDecoderBlock2D" {
			return &ConfigError{"up_block_types", fmt.Sprintf("block %d is %q; only UpDecoderBlock2D is supported", i, t)}
		}
	}
	return nil
}

// New binds the decoder tensors (diffusers names, "decoder." prefix) from src.
func New(b compute.Backend, cfg weights.VAEConfig, src nn.Source) (*Decoder, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	d := &Decoder{block: block{b, cfg.NormNumGroups}, cfg: cfg, ld: nn.NewLoader(b, src)}
	dec := d.ld.Sub("decoder")
	// Decoder widths run from the widest (last block_out_channels) down.
	n := len(cfg.BlockOutChannels)
	rev := make([]int, n)
	for i, ch := range cfg.BlockOutChannels {
		rev[n-1-i] = ch
	}
	c0 := rev[0]
	d.convInW, d.convInB = dec.Get("conv_in.weight", c0, cfg.LatentChannels, 3, 3), dec.Get("conv_in.bias", c0)
	d.mid1 = bindResnet(dec.Sub("mid_block.resnets.0"), c0, c0)
	if cfg.MidBlockAddAttention == nil || *cfg.MidBlockAddAttention {
		d.attn = bindAttention(dec.Sub("mid_block.attentions.0"), c0)
	}
	d.mid2 = bindResnet(dec.Sub("mid_block.resnets.1"), c0, c0)
	prev := c0
	for i, co := range rev {
		p := dec.Sub("up_blocks." + strconv.Itoa(i))
		ub := &upBlock{}
		for j := 0; j <= cfg.LayersPerBlock; j++ {
			ci := co
			if j == 0 {
				ci = prev
			}
			ub.resnets = append(ub.resnets, bindResnet(p.Sub("resnets."+strconv.Itoa(j)), ci, co))
		}
		if i < n-1 {
			ub.upW, ub.upB = p.Get("upsamplers.0.conv.weight", co, co, 3, 3), p.Get("upsamplers.0.conv.bias", co)
		}
		d.up = append(d.up, ub)
		prev = co
	}
	d.normOutW, d.normOutB = dec.Get("conv_norm_out.weight", prev), dec.Get("conv_norm_out.bias", prev)
	d.convOutW, d.convOutB = dec.Get("conv_out.weight", cfg.OutChannels, prev, 3, 3), dec.Get("conv_out.bias", cfg.OutChannels)
	if err := d.ld.Err(); err != nil {
		d.ld.Free()
		return nil, fmt.Errorf("vae: %w", err)
	}
	return d, nil
}

func bindAttention(p *nn.Loader, c int) *attention {
	return &attention{
		normW: p.Get("group_norm.weight", c), normB: p.Get("group_norm.bias", c),
		// Loose: FLUX-original files store these as 1×1 convs [C, C, 1, 1].
		q: p.Loose("to_q.weight", c, c), qB: p.Get("to_q.bias", c),
		k: p.Loose("to_k.weight", c, c), kB: p.Get("to_k.bias", c),
		v: p.Loose("to_v.weight", c, c), vB: p.Get("to_v.bias", c),
		o: p.Loose("to_out.0.weight", c, c), oB: p.Get("to_out.0.bias", c),
	}
}

func bindResnet(p *nn.Loader, ci, co int) *resnet {
	r := &resnet{
		norm1W: p.Get("norm1.weight", ci), norm1B: p.Get("norm1.bias", ci),
		conv1W: p.Get("conv1.weight", co, ci, 3, 3), conv1B: p.Get("conv1.bias", co),
		norm2W: p.Get("norm2.weight", co), norm2B: p.Get("norm2.bias", co),
		conv2W: p.Get("conv2.weight", co, co, 3, 3), conv2B: p.Get("conv2.bias", co),
	}
	if ci != co {
		r.scW, r.scB = p.Get("conv_shortcut.weight", co, ci, 1, 1), p.Get("conv_shortcut.bias", co)
	}
	return r
}

// Config returns the configuration the decoder was built with.
func (d *Decoder) Config() weights.VAEConfig { return d.cfg }

// Close releases the backend handles (the checkpoint Set is the caller's).
func (d *Decoder) Close() {
	if d.ld != nil {
		d.ld.Free()
		d.ld = nil
	}
}

// Scale returns z = latents/scaling_factor + shift_factor in float32 ops,
// the decoder input the pipeline computes.
func (d *Decoder) Scale(latents []float32) []float32 {
	s := float32(d.cfg.ScalingFactor)
	var sh float32
	if d.cfg.ShiftFactor != nil {
		sh = float32(*d.cfg.ShiftFactor)
	}
	z := make([]float32, len(latents))
	for i, v := range latents {
		z[i] = v/s + sh
	}
	return z
}

// ShapeError reports a latent of the wrong size.
type ShapeError struct {
	Reason string
}

func (e *ShapeError) Error() string { return "vae: latent: " + e.Reason }

// Decode decodes the pipeline's latents [latent_channels, h, w] (before
// scaling; Decode applies /scaling_factor + shift_factor) and returns the
// image [out_channels, H, W] in float32, H = h·2^(blocks−1). tr receives
// "vae_input", "conv_in", "mid_block.attention", "mid_block", "up_blocks.<i>",
// "conv_norm_out", "image". ctx is checked after every resnet.
func (d *Decoder) Decode(ctx context.Context, latents []float32, h, w int, tr nn.Trace) ([]float32, error) {
	c := d.cfg
	if h <= 0 || w <= 0 || len(latents) != c.LatentChannels*h*w {
		return nil, &ShapeError{fmt.Sprintf("%d values for %d×%d×%d", len(latents), c.LatentChannels, h, w)}
	}
	b := d.b
	z := b.FromHost(d.Scale(latents), c.LatentChannels, h, w) // [16, h, w]
	tr.Emit("vae_input", z)
	x := b.Conv2D(z, d.convInW, d.convInB, 1) // [C0, h, w]
	b.Free(z)
	tr.Emit("conv_in", x)

	steps := []func(compute.Tensor) compute.Tensor{
		func(x compute.Tensor) compute.Tensor { return d.resnet(d.mid1, x) },
	}
	if d.attn != nil {
		steps = append(steps, func(x compute.Tensor) compute.Tensor {
			y := d.attention(d.attn, x)
			tr.Emit("mid_block.attention", y)
			return y
		})
	}
	steps = append(steps, func(x compute.Tensor) compute.Tensor {
		y := d.resnet(d.mid2, x)
		tr.Emit("mid_block", y)
		return y
	})
	for i, ub := range d.up {
		for j, r := range ub.resnets {
			last := j == len(ub.resnets)-1
			steps = append(steps, func(x compute.Tensor) compute.Tensor {
				y := d.resnet(r, x)
				if last && ub.upW == nil {
					tr.Emit("up_blocks."+strconv.Itoa(i), y)
				}
				return y
			})
		}
		if ub.upW != nil {
			steps = append(steps, func(x compute.Tensor) compute.Tensor {
				y := upsampleConvFree(b, x, ub.upW, ub.upB, 1) // conv of the 2× upsampling [C, 2h, 2w]
				tr.Emit("up_blocks."+strconv.Itoa(i), y)
				return y
			})
		}
	}
	x, err := runSteps(ctx, b, x, steps, "vae")
	if err != nil {
		return nil, err
	}

	var s compute.Tensor // SiLU(conv_norm_out) [Clast, H, W]
	if tr == nil {
		s = groupNormSiLUFree(b, x, d.normOutW, d.normOutB, d.groups)
	} else { // the trace wants the norm itself
		n := b.GroupNorm(x, d.normOutW, d.normOutB, d.groups, normEps) // [Clast, H, W]
		b.Free(x)
		tr.Emit("conv_norm_out", n)
		s = b.SiLU(n)
		b.Free(n)
	}
	img := b.Conv2D(s, d.convOutW, d.convOutB, 1) // [3, H, W]
	b.Free(s)
	tr.Emit("image", img)
	out := b.ToHost(img)
	b.Free(img)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	return out, nil
}

// resnet runs one ResnetBlock2D on x [ci, h, w] → [co, h, w] and frees x.
// With a 1×1 shortcut it runs first, so x is done with by norm1, whose
// GroupNorm+SiLU can then take x's storage; the residual is added into
// conv2's output. On a backend with in-place ops that holds x, one map
// for a shortcut and two for the convolutions, where the plain order held
// an extra one: at 512² in the medium decoder the 128→64 resnet's input
// is 128 MB.
func (d block) resnet(r *resnet, x compute.Tensor) compute.Tensor {
	b := d.b
	res := x // the residual: x or its shortcut
	var a1 compute.Tensor
	if r.scW != nil {
		res = b.Conv2D(x, r.scW, r.scB, 0)                         // 1×1 shortcut [co, h, w]
		a1 = groupNormSiLUFree(b, x, r.norm1W, r.norm1B, d.groups) // [ci, h, w], frees x
	} else {
		a1 = fused.GroupNormSiLU(b, x, r.norm1W, r.norm1B, d.groups, normEps) // [ci, h, w]
	}
	h1 := b.Conv2D(a1, r.conv1W, r.conv1B, 1) // [co, h, w]
	b.Free(a1)
	a2 := groupNormSiLUFree(b, h1, r.norm2W, r.norm2B, d.groups) // frees h1
	h2 := b.Conv2D(a2, r.conv2W, r.conv2B, 1)                    // [co, h, w]
	b.Free(a2)
	out := addFree(b, h2, res) // h2 + residual, frees h2
	b.Free(res)
	return out
}

// attention runs the single-head mid-block attention with its residual on
// x [C, h, w] and frees x (the residual is added in its storage where the
// backend can).
func (d block) attention(a *attention, x compute.Tensor) compute.Tensor {
	b := d.b
	sh := x.Shape()
	C, H, W := sh[0], sh[1], sh[2]
	g := b.GroupNorm(x, a.normW, a.normB, d.groups, normEps) // [C, H, W]
	tok := b.Transpose(b.Reshape(g, C, H*W))                 // tokens [H·W, C]
	b.Free(g)
	q := b.MatMul(tok, a.q, a.qB) // [H·W, C]
	k := b.MatMul(tok, a.k, a.kB)
	v := b.MatMul(tok, a.v, a.vB)
	b.Free(tok)
	o := b.Attention(q, k, v, 1, 1, float32(1/math.Sqrt(float64(C))), false) // one head of width C
	b.Free(q, k, v)
	p := b.MatMul(o, a.o, a.oB) // [H·W, C]
	b.Free(o)
	back := b.Transpose(p) // [C, H·W]
	b.Free(p)
	out := addFree(b, x, b.Reshape(back, C, H, W))
	b.Free(back)
	return out
}

// ToImage converts a decoded image [3, H, W] to 8-bit RGBA the way the
// reference post-processes: v = clamp(x·0.5 + 0.5, 0, 1), then
// round_half_even(v·255), all in float32.
func ToImage(img []float32, h, w int) (*image.RGBA, error) {
	if len(img) != 3*h*w {
		return nil, &ShapeError{fmt.Sprintf("image has %d values, want 3×%d×%d", len(img), h, w)}
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			px := out.Pix[y*out.Stride+4*x:]
			for c := 0; c < 3; c++ {
				px[c] = ToU8(img[c*plane+i])
			}
			px[3] = 255
		}
	}
	return out, nil
}

// ToU8 is the per-value post-processing of ToImage.
func ToU8(x float32) uint8 {
	v := float32(x*0.5) + 0.5 // explicit rounding: no FMA contraction on arm64
	// Written as min/max so a NaN maps to 0 rather than poisoning the byte.
	if !(v > 0) {
		v = 0
	}
	if v > 1 {
		v = 1
	}
	return uint8(math.RoundToEven(float64(v * 255)))
}

// runSteps applies steps in order (each frees its input), and stops at the
// first backend error (wrapped with prefix) or cancellation; on error
// nothing is left allocated.
func runSteps(ctx context.Context, b compute.Backend, x compute.Tensor, steps []func(compute.Tensor) compute.Tensor, prefix string) (compute.Tensor, error) {
	for _, step := range steps {
		x = step(x)
		if err := b.Err(); err != nil {
			b.Free(x)
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		if err := ctx.Err(); err != nil {
			b.Free(x)
			return nil, err
		}
	}
	return x, nil
}
