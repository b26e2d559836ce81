// Package gpucheck measures the CUDA backend at full size without a
// checkpoint: the three Z-Image networks are built from synthetic weights
// (package cuda/synthetic, filled on the device) and timed stage by stage —
// the text encoder on a prompt of about 100 tokens, every DiT step, the VAE
// decode — with the device memory peak of each stage. The GPU tests of this
// package (build tag gpu) and scripts/gpu-check.sh use it; so does
// bench/cuda_test.go.
package gpucheck

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/qwen3"
	"github.com/zimage/zimage/zimage/vae"
)

// Config is what Run measures.
type Config struct {
	DiT    weights.DiTConfig
	TE     weights.Qwen3Config
	VAE    weights.VAEConfig
	Tokens int      // prompt tokens for the text encoder (and caption length)
	Sizes  [][2]int // image width, height
	Steps  int      // DiT forwards per size
	Reps   int      // timed text-encoder runs (the best is reported)
}

// DefaultConfig is the Turbo configuration: ~100 tokens, 1024² and 512², 8
// steps.
func DefaultConfig() Config {
	return Config{DiT: weights.DefaultDiTConfig(), TE: weights.DefaultQwen3Config(), VAE: weights.DefaultVAEConfig(),
		Tokens: 100, Sizes: [][2]int{{1024, 1024}, {512, 512}}, Steps: 8, Reps: 3}
}

// SizeResult holds one image size's figures.
type SizeResult struct {
	Width, Height int
	Steps         []time.Duration // each DiT forward (after one warm-up)
	VAE           time.Duration
	PeakDiT       uint64 // device bytes held at the peak of the denoising loop
	PeakVAE       uint64 // ... of the decode
	ActDiT        uint64 // PeakDiT minus the bytes resident before the stage
	ActVAE        uint64
}

// Report is the outcome of Run.
type Report struct {
	Device     string
	Precision  string
	Free       uint64 // device memory free before loading
	Total      uint64
	Load       [3]time.Duration // text encoder, DiT, VAE: building and filling weights
	Weights    [3]uint64        // device bytes each network holds
	TE         time.Duration    // best text-encoder run
	TEPeak     uint64
	Sizes      []SizeResult
	Wall       time.Duration
	MemoryNote string
}

// Run builds each network on b (which must have SyntheticWeights set), runs
// and times it, then releases it. log, if not nil, receives progress lines.
func Run(ctx context.Context, b *cuda.Backend, c Config, log func(string)) (*Report, error) {
	if log == nil {
		log = func(string) {}
	}
	start := time.Now()
	r := &Report{Device: b.Device().Props().Name, Precision: b.Precision().String()}
	var err error
	if r.Free, r.Total, err = b.MemInfo(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))

	// Text encoder.
	base := b.CurrentBytes()
	t0 := time.Now()
	te, err := qwen3.New(b, c.TE, synthetic.TextEncoder(c.TE))
	if err != nil {
		return nil, fmt.Errorf("gpucheck: text encoder: %w", err)
	}
	if err := b.Sync(); err != nil {
		return nil, err
	}
	r.Load[0], r.Weights[0] = time.Since(t0), b.CurrentBytes()-base
	log(fmt.Sprintf("text encoder loaded: %.1f GB in %v", float64(r.Weights[0])/1e9, r.Load[0].Round(time.Millisecond)))
	ids := make([]int, c.Tokens)
	for i := range ids {
		ids[i] = rng.IntN(151643)
	}
	var feats []float32
	b.ResetPeak()
	for i := 0; i <= c.Reps; i++ { // the first run warms up (GEMM plans)
		t := time.Now()
		if feats, err = te.Encode(ctx, ids, nil); err != nil {
			te.Close()
			return nil, fmt.Errorf("gpucheck: text encoder: %w", err)
		}
		if d := time.Since(t); i > 0 && (r.TE == 0 || d < r.TE) {
			r.TE = d
		}
	}
	r.TEPeak = b.PeakBytes()
	te.Close()
	log(fmt.Sprintf("text encoder: %v for %d tokens", r.TE.Round(10*time.Microsecond), c.Tokens))

	// DiT.
	base = b.CurrentBytes()
	t0 = time.Now()
	m, err := dit.New(b, c.DiT, synthetic.DiT(c.DiT))
	if err != nil {
		return nil, fmt.Errorf("gpucheck: dit: %w", err)
	}
	defer m.Close()
	if err := b.Sync(); err != nil {
		return nil, err
	}
	r.Load[1], r.Weights[1] = time.Since(t0), b.CurrentBytes()-base
	log(fmt.Sprintf("DiT loaded: %.1f GB in %v", float64(r.Weights[1])/1e9, r.Load[1].Round(time.Millisecond)))
	capt, err := m.PrepareCaption(ctx, feats, len(ids), nil)
	if err != nil {
		return nil, fmt.Errorf("gpucheck: dit caption: %w", err)
	}
	defer capt.Free()
	latents := make([][]float32, len(c.Sizes))
	for si, sz := range c.Sizes {
		hl, wl := sz[1]/8, sz[0]/8
		x := make([]float32, c.DiT.InChannels*hl*wl)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		res := SizeResult{Width: sz[0], Height: sz[1]}
		resident := b.CurrentBytes()
		b.ResetPeak()
		for i := 0; i <= c.Steps; i++ { // step 0 is a warm-up
			sigma := 1 - float32(i)/float32(c.Steps+1)
			t := time.Now()
			if _, err := m.Forward(ctx, x, hl, wl, 1-sigma, capt, nil); err != nil {
				return nil, fmt.Errorf("gpucheck: dit %dx%d: %w", sz[0], sz[1], err)
			}
			if i > 0 {
				res.Steps = append(res.Steps, time.Since(t))
			}
		}
		res.PeakDiT = b.PeakBytes()
		res.ActDiT = res.PeakDiT - resident
		latents[si] = x
		r.Sizes = append(r.Sizes, res)
		log(fmt.Sprintf("DiT %dx%d: mean step %v", sz[0], sz[1], mean(res.Steps).Round(10*time.Microsecond)))
	}
	m.Close()
	capt.Free()

	// VAE.
	base = b.CurrentBytes()
	t0 = time.Now()
	d, err := vae.New(b, c.VAE, synthetic.VAE(c.VAE))
	if err != nil {
		return nil, fmt.Errorf("gpucheck: vae: %w", err)
	}
	defer d.Close()
	if err := b.Sync(); err != nil {
		return nil, err
	}
	r.Load[2], r.Weights[2] = time.Since(t0), b.CurrentBytes()-base
	for si, sz := range c.Sizes {
		hl, wl := sz[1]/8, sz[0]/8
		resident := b.CurrentBytes()
		b.ResetPeak()
		for i := 0; i < 2; i++ { // warm-up, then the timed run
			t := time.Now()
			if _, err := d.Decode(ctx, latents[si], hl, wl, nil); err != nil {
				return nil, fmt.Errorf("gpucheck: vae %dx%d: %w", sz[0], sz[1], err)
			}
			r.Sizes[si].VAE = time.Since(t)
		}
		r.Sizes[si].PeakVAE = b.PeakBytes()
		r.Sizes[si].ActVAE = r.Sizes[si].PeakVAE - resident
		log(fmt.Sprintf("VAE %dx%d: %v", sz[0], sz[1], r.Sizes[si].VAE.Round(10*time.Microsecond)))
	}
	r.Wall = time.Since(start)
	return r, nil
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}

// Table formats the report as a short text table.
func (r *Report) Table() string {
	var sb strings.Builder
	gb := func(n uint64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	fmt.Fprintf(&sb, "device: %s (%s free of %s), precision %s\n", r.Device, gb(r.Free), gb(r.Total), r.Precision)
	fmt.Fprintf(&sb, "weights: text encoder %s (load %s), DiT %s (load %s), VAE %s (load %s)\n",
		gb(r.Weights[0]), ms(r.Load[0]), gb(r.Weights[1]), ms(r.Load[1]), gb(r.Weights[2]), ms(r.Load[2]))
	fmt.Fprintf(&sb, "text encoder: %s per prompt, peak %s\n", ms(r.TE), gb(r.TEPeak))
	fmt.Fprintf(&sb, "%-10s %12s %12s %12s %10s %14s %14s %12s\n", "size", "DiT step", "step min", "all steps", "VAE", "peak DiT", "peak VAE", "total")
	for _, s := range r.Sizes {
		mn := s.Steps[0]
		for _, d := range s.Steps {
			mn = min(mn, d)
		}
		all := mean(s.Steps) * time.Duration(len(s.Steps))
		fmt.Fprintf(&sb, "%-10s %12s %12s %12s %10s %14s %14s %12s\n", fmt.Sprintf("%dx%d", s.Width, s.Height),
			ms(mean(s.Steps)), ms(mn), ms(all), ms(s.VAE),
			fmt.Sprintf("%s (+%s)", gb(s.PeakDiT), gb(s.ActDiT)), fmt.Sprintf("%s (+%s)", gb(s.PeakVAE), gb(s.ActVAE)),
			ms(r.TE+all+s.VAE))
	}
	fmt.Fprintf(&sb, "(peaks: device bytes held by the backend incl. resident weights; +activations and workspace)\n")
	return sb.String()
}
