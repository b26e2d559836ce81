package zimage

import (
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/vae"
)

// WithWarmup tells Load the image size the first requests will have, so it
// can prepare for them: on the CPU backend it pre-faults the activation
// memory a first generation at that size takes (see warmupBytes), moving
// that page-fault and zeroing cost (~0.4 ms per MB) from the first Run's
// timed stages into Load. Results are unchanged; a Run at another size
// works as usual. Backends without a Reserve(bytes int64) method ignore it.
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

// warmup reserves memory on the backend for the WithWarmup size.
func (p *Pipeline) warmup(o *options) {
	r, ok := p.b.(interface{ Reserve(int64) })
	if !ok || o.warm == [2]int{} {
		return
	}
	n := warmupBytes(p.model, p.spatial, o.warm[0], o.warm[1])
	if o.budget > 0 {
		n = min(n, o.budget/8) // a tight budget leaves room to the plan
	}
	if n > 0 {
		p.log.Debug("zimage: warmup", "width", o.warm[0], "height", o.warm[1], "bytes", n)
		r.Reserve(int64(min(n, 1<<62)))
	}
}
