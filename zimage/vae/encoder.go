package vae

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// Encoder is the VAE encoder bound to a backend: RGB [3, H, W] in [-1, 1] →
// the diagonal Gaussian posterior over latents [latent_channels, H/f, W/f],
// f = 2^(blocks−1). The img2img and inpaint pipelines sample it and apply
// (z − shift_factor)·scaling_factor (Latents).
type Encoder struct {
	block
	cfg weights.VAEConfig
	ld  *nn.Loader

	convInW, convInB   compute.Tensor // encoder.conv_in [C0, in, 3, 3], [C0]
	down               []*downBlock   // encoder.down_blocks.i, i = 0 full resolution
	mid1, mid2         *resnet        // encoder.mid_block.resnets.{0,1}
	attn               *attention     // encoder.mid_block.attentions.0; nil without mid-block attention
	normOutW, normOutB compute.Tensor // encoder.conv_norm_out [Clast]
	convOutW, convOutB compute.Tensor // encoder.conv_out [2·latent, Clast, 3, 3], [2·latent]
	quantW, quantB     compute.Tensor // quant_conv [2·latent, 2·latent, 1, 1]; nil unless use_quant_conv
}

// downBlock is a DownEncoderBlock2D: layers_per_block resnets, then (except
// for the last block) a Downsample2D: zero-pad one column right and one row
// below, 3×3 conv with stride 2.
type downBlock struct {
	resnets      []*resnet
	downW, downB compute.Tensor // downsamplers.0.conv [co, co, 3, 3], [co]; nil for the last block
}

// NewEncoder binds the encoder tensors (diffusers names, "encoder." and
// "quant_conv." prefixes) from src.
func NewEncoder(b compute.Backend, cfg weights.VAEConfig, src nn.Source) (*Encoder, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if cfg.InChannels <= 0 {
		return nil, &ConfigError{"in_channels", "must be positive"}
	}
	for i, t := range cfg.DownBlockTypes {
		if t != "DownEncoderBlock2D" {
			return nil, &ConfigError{"down_block_types", fmt.Sprintf("block %d is %q; only DownEncoderBlock2D is supported", i, t)}
		}
	}
	e := &Encoder{block: block{b, cfg.NormNumGroups}, cfg: cfg, ld: nn.NewLoader(b, src)}
	enc := e.ld.Sub("encoder")
	boc := cfg.BlockOutChannels
	e.convInW, e.convInB = enc.Get("conv_in.weight", boc[0], cfg.InChannels, 3, 3), enc.Get("conv_in.bias", boc[0])
	prev := boc[0]
	for i, co := range boc {
		p := enc.Sub("down_blocks." + strconv.Itoa(i))
		db := &downBlock{}
		for j := 0; j < cfg.LayersPerBlock; j++ {
			ci := co
			if j == 0 {
				ci = prev
			}
			db.resnets = append(db.resnets, bindResnet(p.Sub("resnets."+strconv.Itoa(j)), ci, co))
		}
		if i < len(boc)-1 {
			db.downW, db.downB = p.Get("downsamplers.0.conv.weight", co, co, 3, 3), p.Get("downsamplers.0.conv.bias", co)
		}
		e.down = append(e.down, db)
		prev = co
	}
	e.mid1 = bindResnet(enc.Sub("mid_block.resnets.0"), prev, prev)
	if cfg.MidBlockAddAttention == nil || *cfg.MidBlockAddAttention {
		e.attn = bindAttention(enc.Sub("mid_block.attentions.0"), prev)
	}
	e.mid2 = bindResnet(enc.Sub("mid_block.resnets.1"), prev, prev)
	l2 := 2 * cfg.LatentChannels // double_z: mean and log-variance
	e.normOutW, e.normOutB = enc.Get("conv_norm_out.weight", prev), enc.Get("conv_norm_out.bias", prev)
	e.convOutW, e.convOutB = enc.Get("conv_out.weight", l2, prev, 3, 3), enc.Get("conv_out.bias", l2)
	if cfg.UseQuantConv {
		q := e.ld.Sub("quant_conv")
		e.quantW, e.quantB = q.Get("weight", l2, l2, 1, 1), q.Get("bias", l2)
	}
	if err := e.ld.Err(); err != nil {
		e.ld.Free()
		return nil, fmt.Errorf("vae: encoder: %w", err)
	}
	return e, nil
}

// Config returns the configuration the encoder was built with.
func (e *Encoder) Config() weights.VAEConfig { return e.cfg }

// Factor is the spatial downscaling of the encoder, 2^(blocks−1).
func (e *Encoder) Factor() int { return 1 << (len(e.cfg.BlockOutChannels) - 1) }

// Close releases the backend handles (the checkpoint Set is the caller's).
func (e *Encoder) Close() {
	if e.ld != nil {
		e.ld.Free()
		e.ld = nil
	}
}

// Posterior is the encoder's diagonal Gaussian over latents, both
// [latent_channels, h, w]: Std = exp(0.5·clamp(logvar, −30, 20)) like
// diffusers' DiagonalGaussianDistribution.
type Posterior struct {
	Mean, Std []float32
	H, W      int // latent size
}

// Sample returns Mean + Std·eps in float32 (the reference's
// latent_dist.sample(generator), eps being its randn draw of Mean's shape).
func (p *Posterior) Sample(eps []float32) ([]float32, error) {
	if len(eps) != len(p.Mean) {
		return nil, &ShapeError{fmt.Sprintf("eps has %d values, posterior %d", len(eps), len(p.Mean))}
	}
	out := make([]float32, len(eps))
	for i, m := range p.Mean {
		out[i] = m + float32(p.Std[i]*eps[i]) // product rounded first: no FMA
	}
	return out, nil
}

// Latents returns (z − shift_factor)·scaling_factor in float32 ops: the
// pipelines' image latents, the inverse of Decoder.Scale.
func (e *Encoder) Latents(z []float32) []float32 {
	s := float32(e.cfg.ScalingFactor)
	var sh float32
	if e.cfg.ShiftFactor != nil {
		sh = float32(*e.cfg.ShiftFactor)
	}
	out := make([]float32, len(z))
	for i, v := range z {
		out[i] = (v - sh) * s
	}
	return out
}

// Encode encodes img [in_channels, H, W] (values in [−1, 1]); H and W must be
// positive multiples of Factor. tr receives "conv_in", "down_blocks.<i>",
// "mid_block.attention", "mid_block", "conv_norm_out", "moments" (the
// conv_out/quant_conv output [2·latent, h, w]). ctx is checked after every
// resnet.
func (e *Encoder) Encode(ctx context.Context, img []float32, h, w int, tr nn.Trace) (*Posterior, error) {
	c, f := e.cfg, e.Factor()
	if h <= 0 || w <= 0 || h%f != 0 || w%f != 0 || len(img) != c.InChannels*h*w {
		return nil, &ShapeError{fmt.Sprintf("image: %d values for %d×%d×%d (sides must be positive multiples of %d)", len(img), c.InChannels, h, w, f)}
	}
	b := e.b
	x0 := b.FromHost(img, c.InChannels, h, w)  // [3, H, W]
	x := b.Conv2D(x0, e.convInW, e.convInB, 1) // [C0, H, W]
	b.Free(x0)
	tr.Emit("conv_in", x)

	var steps []func(compute.Tensor) compute.Tensor
	for i, db := range e.down {
		for j, r := range db.resnets {
			last := j == len(db.resnets)-1 && db.downW == nil
			steps = append(steps, func(x compute.Tensor) compute.Tensor {
				y := e.resnet(r, x)
				if last {
					tr.Emit("down_blocks."+strconv.Itoa(i), y)
				}
				return y
			})
		}
		if db.downW != nil {
			steps = append(steps, func(x compute.Tensor) compute.Tensor {
				y := Downsample(b, x, db.downW, db.downB) // [C, h/2, w/2]
				b.Free(x)
				tr.Emit("down_blocks."+strconv.Itoa(i), y)
				return y
			})
		}
	}
	steps = append(steps, func(x compute.Tensor) compute.Tensor { return e.resnet(e.mid1, x) })
	if e.attn != nil {
		steps = append(steps, func(x compute.Tensor) compute.Tensor {
			y := e.attention(e.attn, x)
			tr.Emit("mid_block.attention", y)
			return y
		})
	}
	steps = append(steps, func(x compute.Tensor) compute.Tensor {
		y := e.resnet(e.mid2, x)
		tr.Emit("mid_block", y)
		return y
	})
	x, err := runSteps(ctx, b, x, steps, "vae: encoder")
	if err != nil {
		return nil, err
	}

	n := b.GroupNorm(x, e.normOutW, e.normOutB, e.groups, normEps) // [Clast, h, w]
	b.Free(x)
	tr.Emit("conv_norm_out", n)
	s := b.SiLU(n)
	b.Free(n)
	mom := b.Conv2D(s, e.convOutW, e.convOutB, 1) // [2·latent, h, w]
	b.Free(s)
	if e.quantW != nil {
		q := b.Conv2D(mom, e.quantW, e.quantB, 0)
		b.Free(mom)
		mom = q
	}
	tr.Emit("moments", mom)
	out := b.ToHost(mom)
	b.Free(mom)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("vae: encoder: %w", err)
	}
	return posterior(out, c.LatentChannels, h/f, w/f), nil
}

// posterior splits moments [2·L, h, w] into the mean and the standard
// deviation exp(0.5·clamp(logvar, −30, 20)).
func posterior(mom []float32, l, h, w int) *Posterior {
	n := l * h * w
	p := &Posterior{Mean: mom[:n:n], Std: make([]float32, n), H: h, W: w}
	for i, lv := range mom[n:] {
		lv = min(max(lv, -30), 20)
		p.Std[i] = float32(math.Exp(float64(0.5 * lv)))
	}
	return p
}

// Downsample is diffusers' Downsample2D (padding 0) on backend b: x [C, H, W]
// (H, W even) padded with one zero column right and one zero row below, then a
// 3×3 conv with stride 2: out[o, i, j] = Σ w[o, c, ky, kx]·x[c, 2i+ky, 2j+kx].
//
// Without a native one, this runs the stride-1 conv with padding 1, whose
// output at (2i+1, 2j+1) reads exactly x[c, 2i+ky, 2j+kx] (zero past the
// last row and column), and keeps the odd rows and columns. The products and their order are those of a strided conv; the
// price is 4× the FLOPs of the three (of ~30) encoder convs that downsample,
// ≈14% of the encoder at 1024². A backend with a native strided conv
// (Strided: the CPU and CUDA backends) runs that instead.
func Downsample(b compute.Backend, x, w, bias compute.Tensor) compute.Tensor {
	if s, ok := b.(Strided); ok {
		return s.Downsample2D(x, w, bias)
	}
	y := b.Conv2D(x, w, bias, 1) // [C, H, W]
	out := samples(b, y, 1)      // [C, H/2, W/2]
	b.Free(y)
	return out
}

// Strided is implemented by backends with a native Downsample2D: x [C, H, W]
// (H, W even), w [Co, C, 3, 3], bias [Co] or nil → [Co, H/2, W/2], the
// stride-2 conv of x padded with a zero row below and a zero column right.
type Strided interface {
	Downsample2D(x, w, bias compute.Tensor) compute.Tensor
}

// evenSamples returns y[:, 0::2, 0::2] of y [C, H, W] (H, W even) as a new
// tensor; y is freed.
func evenSamples(b compute.Backend, y compute.Tensor) compute.Tensor {
	out := samples(b, y, 0)
	b.Free(y)
	return out
}

// samples returns y[:, off::2, off::2] (off 0 or 1) of y [C, H, W], H and W
// even, with the backend's reshape and column-slice copies.
func samples(b compute.Backend, y compute.Tensor, off int) compute.Tensor {
	sh := y.Shape()
	C, H, W := sh[0], sh[1], sh[2]
	rows := b.Slice(b.Reshape(y, C*H/2, 2*W), off*W, (off+1)*W) // rows off, off+2, … [C·H/2, W]
	cols := b.Slice(b.Reshape(rows, C*H/2*W/2, 2), off, off+1)  // columns off, off+2, … [C·H/2·W/2, 1]
	b.Free(rows)
	out := b.Scale(b.Reshape(cols, C, H/2, W/2), 1, 0) // an owned [C, H/2, W/2] (exact copy)
	b.Free(cols)
	return out
}
