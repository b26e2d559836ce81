// Package zimage runs the Z-Image-Turbo text-to-image model: tokenizer, Qwen3
// text encoder, diffusion transformer with a flow-match Euler sampler, and
// VAE decoder, on a compute backend (pure Go CPU today).
//
// Load opens a model — a diffusers-layout directory, a Hugging Face
// repository id (downloaded into the hub cache on first use), or single
// checkpoint files as ComfyUI users have them; Pipeline.Run turns a Request
// into an image:
//
//	p, err := zimage.Load(ctx, "Tongyi-MAI/Z-Image-Turbo")
//	res, err := p.Generate(ctx, "a red fox in the snow", 1024, 1024, -1)
//	png.Encode(w, res.Image)
package zimage

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/zimage/zimage/sampler"
	"github.com/zimage/zimage/tokenizer"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/qwen3"
	"github.com/zimage/zimage/zimage/vae"
)

// Defaults of a Request's zero fields (the Turbo settings).
const (
	DefaultSteps          = 8
	DefaultCFGTruncation  = 1.0
	MaxSteps              = 1000
	MinSize, MaxSize      = 16, 4096
	DefaultMaxSequenceLen = tokenizer.MaxSequenceLength
)

// Request describes one generation. Zero fields take the Turbo defaults.
type Request struct {
	Prompt         string
	NegativePrompt string  // used only with CFG (Guidance > 0); "" like the reference
	Width, Height  int     // multiples of 16 in [16, 4096]
	Seed           int64   // -1 = random (the seed used is in Result.Seed)
	Steps          int     // 0 = 8 (Turbo)
	Guidance       float32 // 0 = no CFG (Turbo); CFG runs iff > 0, like current diffusers
	// CFGNormalization > 0 caps ‖guided‖ at CFGNormalization·‖positive‖ (0 = off).
	CFGNormalization float32
	// CFGTruncation: steps whose DiT time 1−σ exceeds it run without CFG
	// (0 = default 1.0, i.e. never).
	CFGTruncation     float32
	MaxSequenceLength int            // prompt token limit incl. the chat template; 0 = 512
	Progress          func(Progress) // called from Run's goroutine; may be nil
	LoRAs             []LoRA         // run-time adapters for this request, stacked in order (lora.go)

	// Image makes the request image-to-image (inpainting with Mask): it is
	// resized to Width×Height when its size differs (Lanczos, like
	// diffusers' image processor); Width and Height 0 take its size rounded
	// down to the size multiple. See edit.go.
	Image image.Image
	// Mask (same size as Image; white = repaint, binarized at 50% grey)
	// makes the request an inpainting one.
	Mask image.Image
	// Strength in (0, 1]: how much of the schedule runs from the noised
	// image (1 = all of it). 0 = 0.6 for img2img, 1.0 for inpainting
	// (upstream's defaults). Needs Image.
	Strength float64
	// Control steers the image with the ControlNet loaded by WithControlNet
	// (with Image and Mask: ControlNet inpainting). See controlnet.go.
	Control *Control
}

// Progress reports where a Run is. Stage is one of "tokenize",
// "text_encoder", "image_encoder" (img2img/inpaint), "denoise" (Step of Steps
// done), "vae", "done".
type Progress struct {
	Stage   string
	Step    int
	Steps   int
	Elapsed time.Duration // since Run started
}

// Timings is the wall time of each stage of a Run.
type Timings struct {
	Tokenize    time.Duration
	TextEncoder time.Duration
	EncodeImage time.Duration // VAE encoding of Request.Image (0 without one)
	Denoise     time.Duration
	Steps       []time.Duration // per denoising step (both CFG passes)
	VAE         time.Duration
	Total       time.Duration
}

// Result is a generated image and how it was made.
type Result struct {
	Image         *image.RGBA
	Seed          int64 // the seed used (resolved when the request said -1)
	Steps         int
	Width, Height int
	Tokens        int  // prompt tokens fed to the text encoder (template included)
	Truncated     bool // the prompt was cut to MaxSequenceLength, as the reference does
	Timings       Timings
	Memory        Memory // the residency plan and the measured device-memory peak (residency.go)
}

// RequestError reports an invalid Request field.
type RequestError struct {
	Field  string
	Reason string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("zimage: request %s: %s", e.Field, e.Reason)
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("zimage: pipeline is closed")

// Pipeline is a loaded model. Run is serialized by a mutex: one generation at
// a time per Pipeline (a second caller waits); use several Pipelines (and
// memory for each) to run generations in parallel.
//
// Memory: weights stay memory-mapped in their storage dtype (bf16) and are
// never expanded to float32 as a whole. Each network is bound when its stage
// first runs. The text encoder is opened at the start of each Run and closed
// before the DiT is touched, so the two big networks (8 GB and 12.3 GB for
// the real model) are never in use at the same time. The DiT and VAE stay
// bound between Runs once opened (on the CPU their pages are clean file cache
// the kernel may reclaim while the text encoder runs). On a device with its
// own memory (CUDA) each Run is planned from the free device memory and
// WithMemoryBudget instead: which networks stay resident, whether the text
// encoder is loaded whole or streamed layer by layer, and whether the VAE
// decodes in tiles (PlanResidency; logged at Info level, reported with the
// measured peak in Result.Memory).
type Pipeline struct {
	mu      sync.Mutex
	model   *weights.Model
	b       compute.Backend
	ownB    bool
	log     *slog.Logger
	tok     *tokenizer.Tokenizer
	spatial int // pixels per latent cell (2^(VAE blocks−1))
	mult    int // width/height multiple: spatial · patch

	ditSet *weights.Set
	dit    *dit.Model
	vaeSet *weights.Set
	vae    *vae.Decoder
	rs     residency        // residency planning state (residency.go)
	guard  guard            // output guards and the CPU retry (guard.go)
	lora   loraState        // LoRA adapters (lora.go)
	cn     *controlNetState // WithControlNet (controlnet.go)
	closed bool
}

// Load opens the model path refers to and checks it: configs, tokenizer,
// and every component's tensor names and shapes (the weights are only
// mapped, not read). ctx bounds the loading work, downloads included.
//
// path is a model reference: a diffusers-layout directory (also a
// snapshot, or a models--Org--Name folder, of the Hugging Face cache); a
// repository id "Org/Name" or "Org/Name@revision", looked up in the
// Hugging Face cache (HF_HOME, HF_HUB_CACHE) and downloaded when missing
// (see WithPull, WithDownloadProgress, WithHub); a single-file or
// all-in-one checkpoint; or "" for DefaultModel, or for no model directory
// at all when WithSingleFiles names every part. A repository revision found
// complete in the cache is used without asking the hub (`zimage pull`
// updates it). Float32 transformer and text-encoder weights are converted
// to bfloat16 once (WithF32Conversion).
func Load(ctx context.Context, path string, opts ...Option) (*Pipeline, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := openModel(ctx, path, &o, log)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("zimage: load %s: %w", loadName(path, &o), err)
	}
	path = loadName(path, &o)
	if m.DiT.InChannels != m.VAE.LatentChannels {
		return nil, fmt.Errorf("zimage: load %s: transformer in_channels %d != vae latent_channels %d", path, m.DiT.InChannels, m.VAE.LatentChannels)
	}
	if m.DiT.CapFeatDim != m.TextEncoder.HiddenSize {
		return nil, fmt.Errorf("zimage: load %s: transformer cap_feat_dim %d != text encoder hidden_size %d", path, m.DiT.CapFeatDim, m.TextEncoder.HiddenSize)
	}
	tok, err := loadTokenizer(m.TokenizerDir) // gguf.go: a tokenizer directory, or a GGUF's vocabulary
	if err != nil {
		return nil, fmt.Errorf("zimage: load %s: %w", path, err)
	}
	if err := checkGGUFVocab(m, tok); err != nil { // gguf.go
		return nil, fmt.Errorf("zimage: load %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Check every component now (headers, names and shapes; no weight is
	// read) so a broken checkpoint fails here rather than in a Run. The
	// networks themselves are bound lazily, stage by stage (or by WithWarmup
	// at the end of Load: warmup.go).
	for _, open := range []func() (*weights.Set, error){m.OpenTextEncoder, m.OpenTransformer, m.OpenVAE} {
		s, err := open()
		if err != nil {
			return nil, fmt.Errorf("zimage: load %s: %w", path, err)
		}
		s.Close()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}

	p := &Pipeline{model: m, log: log, tok: tok, rs: residency{budget: o.budget}, guard: newGuard(&o)}
	p.spatial = 1 << (len(m.VAE.BlockOutChannels) - 1)
	p.mult = SizeMultiple(m)
	if o.backend != nil {
		p.b = o.backend
	} else {
		b, err := newBackend(&o)
		if err != nil {
			return nil, err
		}
		p.b, p.ownB = b, true
	}
	if err := p.prepareMerge(o.loras); err != nil {
		if c, ok := p.b.(io.Closer); ok && p.ownB {
			c.Close()
		}
		return nil, fmt.Errorf("zimage: load %s: %w", path, err)
	}
	if o.controlnet != "" {
		if err := p.loadControlNet(ctx, o.controlnet, &o, log); err != nil {
			if c, ok := p.b.(io.Closer); ok && p.ownB {
				c.Close()
			}
			if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
				return nil, ctxErr
			}
			return nil, fmt.Errorf("zimage: load %s: %w", path, err)
		}
	}
	p.warmup(&o) // warmup.go
	log.Info("zimage: loaded", "model", path, "backend", p.b.Name(),
		"dit_dim", m.DiT.Dim, "dit_layers", m.DiT.NLayers, "text_layers", m.TextEncoder.NumHiddenLayers)
	return p, nil
}

// loadName names what Load was asked to open, for error messages.
func loadName(path string, o *options) string {
	switch {
	case path != "":
		return path
	case o.single.transformer != "":
		return o.single.transformer
	}
	return DefaultModel
}

// Model returns the model's configs (and where its weights come from).
func (p *Pipeline) Model() *weights.Model { return p.model }

// Backend returns the compute backend the pipeline runs on.
func (p *Pipeline) Backend() compute.Backend { return p.b }

func (p *Pipeline) openDiT() error {
	if p.dit != nil {
		return nil
	}
	s, err := p.model.OpenTransformer()
	if err != nil {
		return fmt.Errorf("zimage: %w", err)
	}
	src, err := p.mergedSource(context.Background(), s)
	if err != nil {
		s.Close()
		return err
	}
	d, err := dit.New(p.b, p.model.DiT, src)
	if err != nil {
		s.Close()
		return fmt.Errorf("zimage: %s: %w", p.model.Name(), err)
	}
	p.ditSet, p.dit = s, d
	return nil
}

func (p *Pipeline) openVAE() error {
	if p.vae != nil {
		return nil
	}
	s, err := p.model.OpenVAE()
	if err != nil {
		return fmt.Errorf("zimage: %w", err)
	}
	d, err := vae.New(p.b, p.model.VAE, s)
	if err != nil {
		s.Close()
		return fmt.Errorf("zimage: %s: %w", p.model.Name(), err)
	}
	p.vaeSet, p.vae = s, d
	return nil
}

// Close releases the weights (and the backend when Load created it). It
// waits for a running Run to finish.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	p.releaseTextEncoder()
	p.releaseLoRADevice()
	errs = append(errs, p.closeControlNet())
	if p.dit != nil {
		p.dit.Close()
		p.dit = nil
	}
	if p.ditSet != nil {
		errs = append(errs, p.ditSet.Close())
		p.ditSet = nil
	}
	if p.vae != nil {
		p.vae.Close()
		p.vae = nil
	}
	if p.vaeSet != nil {
		errs = append(errs, p.vaeSet.Close())
		p.vaeSet = nil
	}
	if c, ok := p.b.(io.Closer); ok && p.ownB {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Generate is Run with the Turbo defaults.
func (p *Pipeline) Generate(ctx context.Context, prompt string, width, height int, seed int64) (*Result, error) {
	return p.Run(ctx, Request{Prompt: prompt, Width: width, Height: height, Seed: seed})
}

// plan is a validated Request with defaults filled in.
type plan struct {
	req         Request
	seed        uint64
	steps       int
	maxLen      int
	cfg         bool // encode a negative prompt and run CFG where the step allows
	truncation  float32
	hl, wl      int // latent size
	imageTokens int
	loras       []activeLoRA // Request.LoRAs, validated (lora.go)
	edit        *editPlan    // img2img/inpaint input (edit.go); nil for text-to-image
	control     *controlPlan // ControlNet input (controlnet.go); nil without
}

func (p *Pipeline) validate(req Request) (plan, error) {
	req = p.controlSize(p.editSize(req))
	pl := plan{req: req, steps: req.Steps, maxLen: req.MaxSequenceLength, truncation: req.CFGTruncation}
	// The reference pipeline would encode an empty prompt (8 template tokens),
	// but an image from no text is almost always a caller's mistake.
	if strings.TrimSpace(req.Prompt) == "" {
		return pl, &RequestError{"prompt", "empty"}
	}
	for _, d := range []struct {
		field string
		v     int
	}{{"width", req.Width}, {"height", req.Height}} {
		if d.v < MinSize || d.v > MaxSize || d.v%p.mult != 0 {
			return pl, &RequestError{d.field, fmt.Sprintf("%d is not a multiple of %d in [%d, %d]", d.v, p.mult, MinSize, MaxSize)}
		}
	}
	if pl.steps == 0 {
		pl.steps = DefaultSteps
	}
	if pl.steps < 1 || pl.steps > MaxSteps {
		return pl, &RequestError{"steps", fmt.Sprintf("%d is not in [1, %d]", req.Steps, MaxSteps)}
	}
	finite := func(f float32) bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }
	if !finite(req.Guidance) || req.Guidance < 0 {
		return pl, &RequestError{"guidance", fmt.Sprintf("%v must be a finite value ≥ 0", req.Guidance)}
	}
	if !finite(req.CFGNormalization) || req.CFGNormalization < 0 {
		return pl, &RequestError{"cfg_normalization", fmt.Sprintf("%v must be a finite value ≥ 0", req.CFGNormalization)}
	}
	if !finite(req.CFGTruncation) || req.CFGTruncation < 0 {
		return pl, &RequestError{"cfg_truncation", fmt.Sprintf("%v must be a finite value ≥ 0", req.CFGTruncation)}
	}
	if pl.truncation == 0 {
		pl.truncation = DefaultCFGTruncation
	}
	if pl.maxLen == 0 {
		pl.maxLen = DefaultMaxSequenceLen
	}
	if pl.maxLen < 1 || pl.maxLen > DefaultMaxSequenceLen {
		return pl, &RequestError{"max_sequence_length", fmt.Sprintf("%d is not in [1, %d]", req.MaxSequenceLength, DefaultMaxSequenceLen)}
	}
	seed, err := sampler.ResolveSeed(req.Seed)
	if err != nil {
		return pl, &RequestError{"seed", err.Error()}
	}
	pl.seed = seed
	if pl.loras, err = p.validateLoRAs(req.LoRAs); err != nil {
		return pl, err
	}
	pl.cfg = req.Guidance > 0
	pl.hl, pl.wl = req.Height/p.spatial, req.Width/p.spatial
	ps := p.model.DiT.PatchSize()
	pl.imageTokens = (pl.hl / ps) * (pl.wl / ps)
	if err := p.validateEdit(&pl); err != nil {
		return pl, err
	}
	if err := p.validateControl(&pl); err != nil {
		return pl, err
	}
	return pl, nil
}

// Run generates one image. It returns a *RequestError for invalid fields,
// ctx.Err() when ctx is cancelled (checked between steps and layers, and
// inside long ops by a compute.Cancellable backend: within a second on the
// CPU; the pipeline stays usable), and wrapped tokenizer/weights/backend
// errors otherwise.
func (p *Pipeline) Run(ctx context.Context, req Request) (*Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	pl, err := p.validate(req)
	if err != nil {
		return nil, err
	}
	p.b.ResetErr()
	if c, ok := p.b.(compute.Cancellable); ok {
		c.SetContext(ctx)
		defer c.SetContext(nil)
	}
	res, err := p.runGuarded(ctx, pl)
	res, err = p.retryOnCPU(ctx, pl, res, err)
	// Leave the backend clean for the next Run whatever happened.
	p.b.ResetErr()
	// A backend with a working-set pool keeps up to its cap for the next
	// Run (cpu: a second generation at the same size takes no fresh memory),
	// unless a memory budget asks for everything idle to be handed back.
	if t, ok := p.b.(interface{ TrimToCap() }); ok && p.rs.budget == 0 {
		t.TrimToCap()
	} else if t, ok := p.b.(interface{ Trim() }); ok {
		t.Trim()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, ctxErr
		}
		return nil, p.runError(err)
	}
	return res, nil
}

func (p *Pipeline) run(ctx context.Context, pl plan) (*Result, error) {
	start := time.Now()
	res := &Result{Seed: int64(pl.seed), Steps: pl.steps, Width: pl.req.Width, Height: pl.req.Height}
	progress := func(stage string, step, steps int) {
		if pl.req.Progress != nil {
			pl.req.Progress(Progress{Stage: stage, Step: step, Steps: steps, Elapsed: time.Since(start)})
		}
	}

	// Tokenize.
	progress("tokenize", 0, 0)
	t0 := time.Now()
	ids, truncated, err := p.tok.EncodeZImage(pl.req.Prompt, pl.maxLen)
	if err != nil {
		return nil, fmt.Errorf("zimage: prompt: %w", err)
	}
	var negIDs []int
	if pl.cfg {
		if negIDs, _, err = p.tok.EncodeZImage(pl.req.NegativePrompt, pl.maxLen); err != nil {
			return nil, fmt.Errorf("zimage: negative prompt: %w", err)
		}
	}
	res.Tokens, res.Truncated = len(ids), truncated
	res.Timings.Tokenize = time.Since(t0)
	if truncated {
		p.log.Warn("zimage: prompt truncated", "max_tokens", pl.maxLen)
	}

	// Residency: which networks stay on the device, how the text encoder
	// runs, full or tiled VAE (residency.go).
	rp, err := p.planRequest(pl, max(len(ids), len(negIDs)))
	if err != nil {
		return nil, err
	}

	// Text encoder, as planned.
	progress("text_encoder", 0, 0)
	t0 = time.Now()
	caps, err := p.encodePlanned(ctx, rp, ids, negIDs)
	if err != nil {
		return nil, err
	}
	for _, c := range caps {
		if err := p.checkFinite("text_encoder", 0, 0, c); err != nil {
			return nil, err
		}
	}
	res.Timings.TextEncoder = time.Since(t0)
	p.log.Debug("zimage: text encoder", "tokens", len(ids), "elapsed", res.Timings.TextEncoder)

	// Image-to-image / inpaint: encode the image, noise it (edit.go).
	noise, err := p.encodeImage(ctx, pl, rp, res, progress)
	if err != nil {
		return nil, err
	}
	if err := p.prepareControl(ctx, pl, rp, res, progress); err != nil {
		return nil, err
	}

	// Denoise.
	t0 = time.Now()
	if noise == nil {
		noise = sampler.Randn(pl.seed, p.model.DiT.InChannels*pl.hl*pl.wl)
	}
	run := pl.steps - pl.firstStep()
	progress("denoise", 0, run)
	latents, stepTimes, err := p.denoise(ctx, pl, noise, caps[0], caps[1], func(i int, _ []float32) { progress("denoise", i, run) })
	if err != nil {
		return nil, err
	}
	res.Timings.Denoise, res.Timings.Steps = time.Since(t0), stepTimes
	p.afterStage(rp, "denoise")
	p.log.Debug("zimage: denoise", "steps", pl.steps, "elapsed", res.Timings.Denoise)

	// VAE decode and post-processing.
	progress("vae", 0, 0)
	t0 = time.Now()
	img, err := p.decodePlanned(ctx, rp, latents, pl.hl, pl.wl)
	if err != nil {
		return nil, err
	}
	p.afterStage(rp, "vae")
	res.Memory = p.memoryReport()
	res.Image = img
	res.Timings.VAE = time.Since(t0)
	res.Timings.Total = time.Since(start)
	progress("done", 0, 0)
	p.log.Info("zimage: generated", "width", res.Width, "height", res.Height, "seed", res.Seed,
		"steps", res.Steps, "total", res.Timings.Total)
	return res, nil
}

// encode opens the text encoder, encodes the prompt (and the negative prompt
// when negIDs is non-nil), and closes it again before returning.
// caps[1] is nil without CFG.
func (p *Pipeline) encode(ctx context.Context, ids, negIDs []int) (caps [2][]float32, err error) {
	set, err := p.model.OpenTextEncoder()
	if err != nil {
		return caps, fmt.Errorf("zimage: %w", err)
	}
	defer set.Close()
	enc, err := qwen3.New(p.b, p.model.TextEncoder, set)
	if err != nil {
		return caps, fmt.Errorf("zimage: %s: %w", p.model.Name(), err)
	}
	defer enc.Close()
	if caps[0], err = enc.Encode(ctx, ids, nil); err != nil {
		return caps, err
	}
	if negIDs != nil {
		if caps[1], err = enc.Encode(ctx, negIDs, nil); err != nil {
			return caps, err
		}
	}
	return caps, nil
}

// denoise runs the sampling loop from noise [C, hl, wl] with the caption
// features pos (and neg for CFG; nil otherwise) and returns the final
// latents and each step's time. onStep(i, x) is called after step i
// (1-based) with the latents so far (valid during the call).
func (p *Pipeline) denoise(ctx context.Context, pl plan, noise, pos, neg []float32, onStep func(int, []float32)) ([]float32, []time.Duration, error) {
	if err := p.openDiT(); err != nil {
		return nil, nil, err
	}
	undoLoRAs, err := p.applyLoRAs(pl.loras)
	if err != nil {
		return nil, nil, err
	}
	defer undoLoRAs()
	cfgD := p.model.DiT
	sched, err := sampler.NewSchedule(p.model.Scheduler, pl.steps, pl.imageTokens)
	if err != nil {
		return nil, nil, fmt.Errorf("zimage: %w", err)
	}
	posCap, err := p.dit.PrepareCaption(ctx, pos, len(pos)/cfgD.CapFeatDim, nil)
	if err != nil {
		return nil, nil, err
	}
	defer posCap.Free()
	var negCap *dit.Caption
	if neg != nil {
		if negCap, err = p.dit.PrepareCaption(ctx, neg, len(neg)/cfgD.CapFeatDim, nil); err != nil {
			return nil, nil, err
		}
		defer negCap.Free()
	}

	x := append([]float32(nil), noise...)
	pred := make([]float32, len(x))
	times := make([]time.Duration, 0, pl.steps)
	first := pl.firstStep()
	// Every step's timestep embedding and modulations in one product per
	// weight (dit/timesteps.go); the same results as per step.
	if err := p.dit.PrepareTimesteps(sched.DiTTime[first:pl.steps]); err != nil {
		return nil, nil, err
	}
	defer p.dit.ReleaseTimesteps()
	for i := first; i < pl.steps; i++ {
		ts := time.Now()
		t := sched.DiTTime[i]
		v, err := p.dit.ForwardHook(ctx, x, pl.hl, pl.wl, t, posCap, pl.hook(), nil)
		if err != nil {
			return nil, nil, err
		}
		var vNeg []float32
		g := pl.req.Guidance
		// cfg_truncation: late steps (DiT time above the threshold) drop CFG.
		if negCap != nil && pl.truncation <= 1 && t > pl.truncation {
			g = 0
		}
		if negCap != nil && g > 0 {
			if vNeg, err = p.dit.ForwardHook(ctx, x, pl.hl, pl.wl, t, negCap, pl.hook(), nil); err != nil {
				return nil, nil, err
			}
		}
		sampler.NoisePred(pred, v, vNeg, g, pl.req.CFGNormalization)
		sampler.Step(x, pred, sched.Sigmas[i], sched.Sigmas[i+1])
		pl.edit.blend(x, i)
		if err := p.checkFinite("denoise", i+1, pl.steps, x); err != nil {
			return nil, nil, err
		}
		times = append(times, time.Since(ts))
		if onStep != nil {
			onStep(i+1-first, x)
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
	}
	return x, times, nil
}

// decode runs the VAE on the final latents and post-processes to RGBA.
func (p *Pipeline) decode(ctx context.Context, latents []float32, hl, wl int) (*image.RGBA, error) {
	if err := p.openVAE(); err != nil {
		return nil, err
	}
	img, err := p.vae.Decode(ctx, latents, hl, wl, nil)
	if err != nil {
		return nil, err
	}
	if err := p.checkFinite("vae", 0, 0, img); err != nil {
		return nil, err
	}
	return vae.ToImage(img, hl*p.spatial, wl*p.spatial)
}
