package zimage

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/zimage/zimage/sampler"
	"github.com/zimage/zimage/zimage/imageproc"
	"github.com/zimage/zimage/zimage/vae"
)

// Image-to-image and inpainting, as diffusers' ZImageImg2ImgPipeline and
// ZImageInpaintPipeline do them:
//
//   - The init image is encoded by the VAE and its posterior *sampled* with
//     the request's generator (never the mode), then scaled:
//     image_latents = (z − shift)·scale.
//   - strength picks the first step: t_start = int(max(steps − min(steps·strength,
//     steps), 0)) in float64 (truncation), and the loop runs timesteps[t_start:]
//     of the full schedule. 0.9 with 8 steps starts at step 0: pure noise.
//   - One generator, draws in order: the posterior sample, then the noise.
//     start = σ·noise + (1 − σ)·image_latents (scale_noise) with σ the
//     sigma of the first step run.
//   - Inpaint: after every Euler step the preserved area (mask 0) is reset to
//     scale_noise(image_latents, σ_next, noise), and to the clean
//     image_latents after the last step; the mask is the binarized grey mask
//     sampled at pixel (f·i, f·j) for latent cell (i, j) (nearest).
//     Upstream also encodes the masked image (a third draw) but never uses
//     the result; that pass is skipped here, which changes nothing.

// Defaults of Request.Strength 0 (upstream's defaults).
const (
	DefaultImg2ImgStrength = 0.6
	DefaultInpaintStrength = 1.0
)

// editPlan is the validated image input of an img2img/inpaint request.
type editPlan struct {
	strength float64
	tStart   int       // first step of the full schedule that runs
	image    []float32 // [3, H, W] in [−1, 1]
	mask     []float32 // latent mask [hl·wl] of 0/1 (1 = repaint); nil for img2img

	// Filled by prepareEdit.
	noise, imageLatents []float32 // [C, hl, wl]
	sigmas              []float32 // the full schedule's sigmas
}

// editSize fills a zero Width and Height from the init image the way
// upstream does (its size rounded down to the size multiple).
func (p *Pipeline) editSize(req Request) Request {
	if req.Image != nil && req.Width == 0 && req.Height == 0 {
		req.Width, req.Height = imageproc.DefaultSize(req.Image, p.mult)
	}
	return req
}

// validateEdit checks the image fields of pl.req (size fields and steps
// already valid) and preprocesses the image and mask.
func (p *Pipeline) validateEdit(pl *plan) error {
	req := pl.req
	s := req.Strength
	switch {
	case req.Image == nil && req.Mask != nil:
		return &RequestError{"mask", "a mask needs an image"}
	case req.Image == nil && s != 0:
		return &RequestError{"strength", "strength needs an image"}
	case req.Image == nil:
		return nil
	case math.IsNaN(s) || s < 0 || s > 1:
		return &RequestError{"strength", fmt.Sprintf("%v is not in (0, 1]", s)}
	}
	if s == 0 {
		s = DefaultImg2ImgStrength
		if req.Mask != nil {
			s = DefaultInpaintStrength
		}
	}
	ib := req.Image.Bounds()
	if ib.Empty() || int64(ib.Dx())*int64(ib.Dy()) > imageproc.DefaultMaxPixels {
		return &RequestError{"image", fmt.Sprintf("%d×%d pixels: empty or over the limit of %d", ib.Dx(), ib.Dy(), imageproc.DefaultMaxPixels)}
	}
	if req.Mask != nil && req.Mask.Bounds().Size() != ib.Size() {
		mb := req.Mask.Bounds()
		return &RequestError{"mask", fmt.Sprintf("%d×%d differs from the image's %d×%d", mb.Dx(), mb.Dy(), ib.Dx(), ib.Dy())}
	}
	ep := &editPlan{strength: s}
	// Python float arithmetic, as get_timesteps does it.
	n := float64(pl.steps)
	ep.tStart = int(max(n-min(n*s, n), 0))
	if ep.tStart >= pl.steps { // only strength 0, refused above
		return &RequestError{"strength", fmt.Sprintf("%v leaves no step of %d to run", s, pl.steps)}
	}
	var err error
	if ep.image, err = imageproc.Tensor(req.Image, req.Width, req.Height); err != nil {
		return &RequestError{"image", err.Error()}
	}
	if req.Mask != nil {
		m, err := imageproc.Mask(req.Mask, req.Width, req.Height)
		if err != nil {
			return &RequestError{"mask", err.Error()}
		}
		// F.interpolate(mode="nearest") to the latent size: pixel (f·i, f·j).
		f := p.spatial
		ep.mask = make([]float32, pl.hl*pl.wl)
		for i := 0; i < pl.hl; i++ {
			for j := 0; j < pl.wl; j++ {
				ep.mask[i*pl.wl+j] = m[f*i*req.Width+f*j]
			}
		}
	}
	pl.edit = ep
	return nil
}

// prepareEdit encodes the init image and returns the start latents; it
// fills pl.edit's noise, image latents and schedule for the blend.
//
// The encoder runs in tiles (EncodeTiled) when the residency plan tiles the
// decoder, with the decoder's tile. The plan folds the encode into its
// decode stage (PlanInput.Image): it runs between the text encoder and the
// DiT, beside what the plan keeps resident, and its activations (at 1024²:
// three 128-channel maps at full size, where the decoder's upsample holds a
// 256-channel one at half and two at full size) are no larger than the
// decoder's (vae.TestEncoderMemoryWithinDecoder measures both: the encoder
// peaks at half the decoder whole, at most the same tiled); the plan adds
// the encoder's weights (34 M parameters for the real VAE) where the decoder
// stays resident.
func (p *Pipeline) prepareEdit(ctx context.Context, pl plan, rp Plan) ([]float32, error) {
	ep := pl.edit
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
	var post *vae.Posterior
	if rp.VAETile > 0 {
		post, err = enc.EncodeTiled(ctx, ep.image, pl.req.Height, pl.req.Width, rp.VAETile)
	} else {
		post, err = enc.Encode(ctx, ep.image, pl.req.Height, pl.req.Width, nil)
	}
	if err != nil {
		return nil, err
	}
	n := len(post.Mean)
	if n != p.model.DiT.InChannels*pl.hl*pl.wl {
		return nil, fmt.Errorf("zimage: image latents have %d values, want %d×%d×%d", n, p.model.DiT.InChannels, pl.hl, pl.wl)
	}
	g := sampler.NewGenerator(pl.seed)
	z, err := post.Sample(g.Randn(n, sampler.KernelAVX2)) // draw 1: posterior sample
	if err != nil {
		return nil, err
	}
	ep.imageLatents = enc.Latents(z)
	ep.noise = g.Randn(n, sampler.KernelAVX2) // draw 2: noise
	sched, err := sampler.NewSchedule(p.model.Scheduler, pl.steps, pl.imageTokens)
	if err != nil {
		return nil, fmt.Errorf("zimage: %w", err)
	}
	ep.sigmas = sched.Sigmas
	return scaleNoise(ep.imageLatents, ep.noise, ep.sigmas[ep.tStart]), nil
}

// scaleNoise is the flow-match scheduler's scale_noise in float32:
// σ·noise + (1 − σ)·x.
func scaleNoise(x, noise []float32, sigma float32) []float32 {
	out := make([]float32, len(x))
	keep := 1 - sigma
	for i, v := range x {
		out[i] = float32(sigma*noise[i]) + float32(keep*v)
	}
	return out
}

// blend is the inpaint step after Euler step j of the full schedule (0-based):
// where the mask is 0 the latents become image_latents noised to the next
// sigma (clean after the last step). (1−m)·ref + m·x with m ∈ {0, 1} is a
// selection, exactly.
func (ep *editPlan) blend(x []float32, j int) {
	if ep == nil || ep.mask == nil {
		return
	}
	last := j == len(ep.sigmas)-2
	sigma := ep.sigmas[j+1]
	hw := len(ep.mask)
	for i, v := range ep.imageLatents {
		if ep.mask[i%hw] != 0 {
			continue
		}
		if last {
			x[i] = v
		} else {
			x[i] = float32(sigma*ep.noise[i]) + float32((1-sigma)*v)
		}
	}
}

// encodeImage runs the image stage of run (a no-op without an image) and
// returns the start latents, or nil for text-to-image.
func (p *Pipeline) encodeImage(ctx context.Context, pl plan, rp Plan, res *Result, progress func(string, int, int)) ([]float32, error) {
	if pl.edit == nil {
		return nil, nil
	}
	progress("image_encoder", 0, 0)
	t0 := time.Now()
	start, err := p.prepareEdit(ctx, pl, rp)
	if err != nil {
		return nil, err
	}
	res.Timings.EncodeImage = time.Since(t0)
	return start, nil
}

// firstStep is the index of the first step run: t_start for img2img and
// inpaint, 0 otherwise.
func (pl plan) firstStep() int {
	if pl.edit == nil {
		return 0
	}
	return pl.edit.tStart
}
