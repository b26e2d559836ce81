package zimage

import (
	"context"
	"runtime/debug"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/vae"
)

// WithWarmup tells Load the image size the first requests will have, so it
// can prepare for them on the CPU backend: it pre-faults the activation
// memory a first generation at that size takes (see warmupBytes) and binds
// the transformer and VAE that the residency plan keeps, with their weight
// pages mapped in (see warmup). That moves the page faults and zeroing
// (~0.4 ms per MB) a fresh process otherwise pays in its first Run's timed
// stages into Load; the total work is the same. Results are unchanged; a
// Run at another size works as usual. Device backends ignore it.
func WithWarmup(width, height int) Option {
	return func(o *options) { o.warm = [2]int{width, height} }
}

// warmTokens is the caption length assumed for the estimate (the DiT pads
// captions to a multiple of 32; a typical prompt is tens of tokens).
const warmTokens = 64

// warmupBytes estimates the fresh activation memory of a first generation
// at width×height from the DiT's and the VAE decoder's peaks: a stage's
// buffers of different sizes are not all live at once but each is
// allocated once, so a first generation takes more than its peak (measured
// on the 262 M-parameter model at 512²: 128 MB fresh in the DiT for a
// 48 MB estimated peak, 585 MB in the VAE for 384 MB; 181 MB in all at
// 256², this estimate 179 MB). An underestimate leaves the rest to ordinary
// allocation; the unused part of an overestimate is handed back after the
// Run. The backend caps the reserve at its pool cap, so a large size never
// pre-faults more than that. 0 when the size is not usable.
func warmupBytes(m *weights.Model, spatial, width, height int) uint64 {
	if width <= 0 || height <= 0 || spatial <= 0 || width%spatial != 0 || height%spatial != 0 {
		return 0
	}
	d := DiTActivation(m.DiT, spatial, width, height, warmTokens, false, 4)
	v := vae.DecodeBytes(m.VAE, height/spatial, width/spatial, 4)
	return d*5/2 + v*3/2
}

// warmup prepares for the WithWarmup size on a host backend (one without
// device memory, whose weights are the mapped files): it pre-faults the
// activation memory (Reserve), and binds the networks the residency plan
// for that size keeps resident — the DiT and the VAE — and maps their
// weight pages in (weights.Set.Populate), so the first Run's denoising
// step and decode take no weight faults; the VAE's 3×3 kernels get their
// float32 expansion then too (cpu SetEagerConvWeights). Nothing is
// populated that the plan would release, so a model larger than memory
// still streams. A failure only skips the warm-up (the Run reports it).
func (p *Pipeline) warmup(o *options) {
	if o.warm == [2]int{} {
		return
	}
	if _, isDev := p.b.(deviceMemory); isDev {
		return
	}
	w, h := o.warm[0], o.warm[1]
	if r, ok := p.b.(interface{ Reserve(int64) }); ok {
		n := warmupBytes(p.model, p.spatial, w, h)
		if o.budget > 0 {
			n = min(n, o.budget/8) // a tight budget leaves room to the plan
		}
		if n > 0 {
			p.log.Debug("zimage: warmup reserve", "width", w, "height", h, "bytes", n)
			r.Reserve(int64(min(n, 1<<62)))
		}
	}
	// Binding reads the mapped weights (Populate is advisory, the eager
	// kernel expansion reads them): a file truncated since the header check
	// is a fault, which only ends the warm-up here (runGuarded's rule).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			if weights.FaultFrom(v) == nil {
				panic(v)
			}
			p.log.Debug("zimage: warmup: memory fault reading mapped weights", "err", v)
		}
	}()
	fp, err := p.footprint()
	if err != nil {
		p.log.Debug("zimage: warmup skipped", "err", err)
		return
	}
	rp, err := PlanResidency(PlanInput{Budget: p.rs.budget, Resident: p.resident(), Model: *fp,
		Width: w, Height: h, Tokens: warmTokens, Host: true})
	if err != nil {
		p.log.Debug("zimage: warmup skipped", "err", err)
		return
	}
	if rp.Keep.DiT {
		if err := p.openDiT(); err != nil {
			p.log.Debug("zimage: warmup: transformer not bound", "err", err)
		} else {
			p.ditSet.Populate()
			// The weights the backend would pack during the first Run
			// (cpu, bf16) are packed now instead.
			if pk, ok := p.b.(interface {
				Prepack(context.Context, ...compute.Tensor) error
			}); ok {
				if err := pk.Prepack(context.Background(), p.dit.ProductWeights()...); err != nil {
					p.log.Debug("zimage: warmup: weights not pre-packed", "err", err)
				}
			}
		}
	}
	if rp.Keep.VAE && rp.VAETile == 0 {
		if e, ok := p.b.(interface{ SetEagerConvWeights(bool) }); ok {
			e.SetEagerConvWeights(true)
			defer e.SetEagerConvWeights(false)
		}
		if err := p.openVAE(); err != nil {
			p.log.Debug("zimage: warmup: VAE not bound", "err", err)
		} else {
			p.vaeSet.Populate()
		}
	}
}
