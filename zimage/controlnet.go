package zimage

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"math"
	"time"

	"github.com/zimage/zimage/zimage/controlnet"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/imageproc"
	"github.com/zimage/zimage/zimage/vae"
)

// ControlNet guidance, as diffusers' ZImageControlNetPipeline and
// ZImageControlNetInpaintPipeline do it:
//
//   - The control image (an already preprocessed canny/depth/pose map) is
//     resized to the output size like the init image of img2img and
//     encoded by the VAE; the posterior's MODE (its mean) is used, so no
//     generator draw: the noise is the text-to-image noise of the seed.
//     control = (mean − shift)·scale, zero channels appended up to the
//     ControlNet's control_in_dim.
//   - With Request.Image and Request.Mask (ControlNet inpainting) the
//     context is [control (C), 1 − mask at latent size (1), latents of the
//     init image with the repaint area blacked out (C)]; the init image
//     enters only through it: the latents start from pure noise, every step
//     runs and nothing is blended.
//   - Every DiT call (both CFG passes) first runs the ControlNet, whose
//     hints, times the conditioning scale, are added after the main layers
//     listed in control_layers_places (controlnet.Hook, dit.ForwardHook).
//   - LoRA adapters (merged or run-time) apply to the DiT only, its
//     refiners and embedders included, so also where the ControlNet runs
//     them (upstream's from_transformer shares those modules); the
//     control blocks and control embedder are the ControlNet's own tensors
//     and get none (TestControlNetWithLoRA).

// DefaultControlScale is Control.Scale 0 (upstream's
// controlnet_conditioning_scale default).
const DefaultControlScale = 0.75

// Control steers a Request with a ControlNet (Load's WithControlNet).
type Control struct {
	// Image is the preprocessed control map (edges, depth, pose…), PNG or
	// JPEG decoded; resized to the output size when it differs. With
	// Width/Height 0 (and no Request.Image) the output takes its size
	// rounded down to the size multiple.
	Image image.Image
	// Scale multiplies the ControlNet's hints (0 = DefaultControlScale).
	Scale float32
}

// controlNetState is the ControlNet a Pipeline was loaded with.
type controlNetState struct {
	ck *controlnet.Checkpoint
	m  *controlnet.Model // bound with the DiT, on first use
}

// controlPlan is the validated control input of a request.
type controlPlan struct {
	scale   float32
	control []float32 // control image [3, H, W] in [−1, 1]
	// ControlNet inpainting: init image and pixel mask (1 = repaint).
	image, mask []float32
	hook        *controlnet.Hook // made by prepareControl
}

// WithControlNet loads a ControlNet with the model: a diffusers-layout
// directory (config.json + weights), a single .safetensors file as
// released (Z-Image-Turbo-Fun-Controlnet-Union*.safetensors; its config is
// inferred, see controlnet.InferConfig), or a repository id resolved
// through the hub cache like the model ("Org/Name", optionally
// "Org/Name/FILE.safetensors" to pick one file). A ControlNet made for
// another transformer makes Load fail with a *controlnet.MismatchError.
func WithControlNet(ref string) Option { return func(o *options) { o.controlnet = ref } }

// LoadControlNet loads (or, with ref "", unloads) the pipeline's ControlNet
// after Load, replacing the one it has; ref is what WithControlNet takes.
// On error the pipeline keeps its previous ControlNet. It waits for a
// running Run.
func (p *Pipeline) LoadControlNet(ctx context.Context, ref string, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	old := p.cn
	p.cn = nil
	if ref != "" {
		if err := p.loadControlNet(ctx, ref, &o, p.log); err != nil {
			p.cn = old
			return fmt.Errorf("zimage: controlnet %s: %w", ref, err)
		}
	}
	p.rs.fp = nil // the DiT footprint counts the ControlNet
	return old.close()
}

// loadControlNet resolves, opens and checks the ControlNet of Load.
func (p *Pipeline) loadControlNet(ctx context.Context, ref string, o *options, log *slog.Logger) error {
	path, err := resolveControlNet(ctx, ref, o, log)
	if err != nil {
		return err
	}
	ck, err := controlnet.Open(path, p.model.DiT)
	if err != nil {
		return err
	}
	if err := ck.Config.Check(p.model.DiT, p.model.VAE.LatentChannels); err != nil {
		ck.Close()
		return fmt.Errorf("controlnet %s: %w", ref, err)
	}
	p.cn = &controlNetState{ck: ck}
	c := ck.Config
	log.Info("zimage: controlnet loaded", "controlnet", ref, "control_blocks", len(c.ControlLayersPlaces),
		"places", c.ControlLayersPlaces, "control_in_dim", c.ControlInDim, "refiner", c.Refiner(), "inferred_config", ck.Inferred)
	return nil
}

// closeControlNet releases the ControlNet (Close).
func (p *Pipeline) closeControlNet() error {
	err := p.cn.close()
	p.cn = nil
	return err
}

// close releases the bound model and the weights (nil: nothing to do).
func (st *controlNetState) close() error {
	if st == nil {
		return nil
	}
	if st.m != nil {
		st.m.Close()
	}
	return st.ck.Close()
}

// releaseControlNetModel unbinds the ControlNet (with the DiT it shares
// blocks with; releaseDiT).
func (p *Pipeline) releaseControlNetModel() {
	if p.cn != nil && p.cn.m != nil {
		p.cn.m.Close()
		p.cn.m = nil
	}
}

// controlNetBytes is the ControlNet's weight memory at elem bytes per value
// (0 without one); the residency planner counts it with the DiT.
func (p *Pipeline) controlNetBytes(elem int) uint64 {
	if p.cn == nil {
		return 0
	}
	var n uint64
	for _, name := range p.cn.ck.Set.Names() {
		if t, ok := p.cn.ck.Set.Tensor(name); ok {
			n += uint64(t.NumElements()) * uint64(elem)
		}
	}
	return n
}

// controlActivation is what a ControlNet forward holds beside the DiT's own
// activations for pl (0 without control): the hints for every control
// place plus the control and unified streams, [L, dim] each (L = padded
// image tokens + padded caption rows).
func (p *Pipeline) controlActivation(pl plan, tokens, elem int) uint64 {
	if pl.control == nil || p.cn == nil {
		return 0
	}
	c := p.cn.ck.Config
	ceil := func(n int) int { return (n + dit.SeqMultiple - 1) / dit.SeqMultiple * dit.SeqMultiple }
	L := ceil(pl.imageTokens) + ceil(max(tokens, 1))
	return uint64(len(c.ControlLayersPlaces)+2) * uint64(L) * uint64(c.Dim) * uint64(elem)
}

// controlSize fills a zero Width and Height from the control image (after
// editSize: an init image decides first).
func (p *Pipeline) controlSize(req Request) Request {
	if req.Control != nil && req.Control.Image != nil && req.Width == 0 && req.Height == 0 {
		req.Width, req.Height = imageproc.DefaultSize(req.Control.Image, p.mult)
	}
	return req
}

// validateControl checks Request.Control (after validateEdit) and
// preprocesses the images. ControlNet inpainting replaces the edit plan:
// upstream's ControlNet inpaint pipeline has no strength and no blending.
func (p *Pipeline) validateControl(pl *plan) error {
	req := pl.req
	ctl := req.Control
	if ctl == nil {
		return nil
	}
	switch {
	case p.cn == nil:
		return &RequestError{"control", "no ControlNet is loaded (Load with WithControlNet)"}
	case ctl.Image == nil:
		return &RequestError{"control", "no control image"}
	case math.IsNaN(float64(ctl.Scale)) || math.IsInf(float64(ctl.Scale), 0):
		return &RequestError{"control_scale", fmt.Sprintf("%v is not finite", ctl.Scale)}
	case req.Image != nil && req.Mask == nil:
		return &RequestError{"image", "with a control image an init image needs a mask (ControlNet inpainting; upstream has no ControlNet img2img)"}
	case req.Image != nil && req.Strength != 0:
		return &RequestError{"strength", "ControlNet inpainting has no strength (the whole schedule runs)"}
	}
	cb := ctl.Image.Bounds()
	if cb.Empty() || int64(cb.Dx())*int64(cb.Dy()) > imageproc.DefaultMaxPixels {
		return &RequestError{"control", fmt.Sprintf("%d×%d pixels: empty or over the limit of %d", cb.Dx(), cb.Dy(), imageproc.DefaultMaxPixels)}
	}
	cp := &controlPlan{scale: ctl.Scale}
	if cp.scale == 0 {
		cp.scale = DefaultControlScale
	}
	var err error
	if cp.control, err = imageproc.Tensor(ctl.Image, req.Width, req.Height); err != nil {
		return &RequestError{"control", err.Error()}
	}
	if req.Image != nil {
		C, cin := p.model.DiT.InChannels, p.cn.ck.Config.ControlInDim
		if cin != 2*C+1 {
			return &RequestError{"mask", fmt.Sprintf("the ControlNet takes %d control channels, inpainting needs %d (a Union 2.x ControlNet)", cin, 2*C+1)}
		}
		cp.image = pl.edit.image // validated and resized by validateEdit
		if cp.mask, err = imageproc.Mask(req.Mask, req.Width, req.Height); err != nil {
			return &RequestError{"mask", err.Error()}
		}
		pl.edit = nil
	}
	pl.control = cp
	return nil
}

// hook is the DiT hook of the request (nil without control).
func (pl plan) hook() dit.Hook {
	if pl.control == nil || pl.control.hook == nil {
		return nil
	}
	return pl.control.hook
}

// prepareControl encodes the control image (and, for inpainting, the
// masked init image) into the control context and binds the ControlNet.
// The encoder runs in tiles when the residency plan tiles the decoder (as
// for img2img).
func (p *Pipeline) prepareControl(ctx context.Context, pl plan, rp Plan, res *Result, progress func(string, int, int)) error {
	cp := pl.control
	if cp == nil {
		return nil
	}
	progress("image_encoder", 0, 0)
	t0 := time.Now()
	H, W := pl.req.Height, pl.req.Width
	imgs := [][]float32{cp.control}
	if cp.image != nil {
		masked := make([]float32, len(cp.image))
		plane := H * W
		for i, v := range cp.image {
			if cp.mask[i%plane] < 0.5 {
				masked[i] = v
			}
		}
		imgs = append(imgs, masked)
	}
	lat, err := p.encodeModes(ctx, pl, rp.VAETile, imgs)
	if err != nil {
		return err
	}
	C, hw := p.model.DiT.InChannels, pl.hl*pl.wl
	cin := p.cn.ck.Config.ControlInDim
	cc := make([]float32, cin*hw) // channels past the latents stay 0
	copy(cc, lat[0])
	if cp.image != nil {
		// keep = nearest-resized 1 − mask: pixel (f·i, f·j) for cell (i, j).
		f := p.spatial
		for i := 0; i < pl.hl; i++ {
			for j := 0; j < pl.wl; j++ {
				cc[C*hw+i*pl.wl+j] = 1 - cp.mask[f*i*W+f*j]
			}
		}
		copy(cc[(C+1)*hw:], lat[1])
	}
	if err := p.openDiT(); err != nil {
		return err
	}
	if p.cn.m == nil { // bound to this DiT; releaseDiT unbinds it
		m, err := controlnet.New(p.b, p.cn.ck.Config, p.dit, p.cn.ck.Set)
		if err != nil {
			return fmt.Errorf("zimage: %w", err)
		}
		p.cn.m = m
	}
	if cp.hook, err = p.cn.m.Hook(cc, pl.hl, pl.wl, cp.scale); err != nil {
		return err
	}
	res.Timings.EncodeImage += time.Since(t0)
	return nil
}

// encodeModes VAE-encodes each image [3, H, W] (in tiles of tile pixels
// when tile > 0, vae.EncodeTiled) and returns the scaled posterior modes
// (mean − shift)·scale [C, hl, wl].
func (p *Pipeline) encodeModes(ctx context.Context, pl plan, tile int, imgs [][]float32) ([][]float32, error) {
	set, err := p.model.OpenVAE()
	if err != nil {
		return nil, fmt.Errorf("zimage: %w", err)
	}
	defer set.Close()
	enc, err := vae.NewEncoder(p.b, p.model.VAE, set)
	if err != nil {
		return nil, fmt.Errorf("zimage: %s: %w", p.model.Name(), err)
	}
	defer enc.Close()
	var out [][]float32
	for _, img := range imgs {
		var post *vae.Posterior
		var err error
		if tile > 0 {
			post, err = enc.EncodeTiled(ctx, img, pl.req.Height, pl.req.Width, tile)
		} else {
			post, err = enc.Encode(ctx, img, pl.req.Height, pl.req.Width, nil)
		}
		if err != nil {
			return nil, err
		}
		if len(post.Mean) != p.model.DiT.InChannels*pl.hl*pl.wl {
			return nil, fmt.Errorf("zimage: control latents have %d values, want %d×%d×%d", len(post.Mean), p.model.DiT.InChannels, pl.hl, pl.wl)
		}
		out = append(out, enc.Latents(post.Mean))
	}
	return out, nil
}
