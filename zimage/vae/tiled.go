package vae

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// Tiled decoding.
//
// The full-resolution decode holds about three [C, H, W] maps at the output
// size on the backend (≈1.5 GB in bf16 at 1024²). DecodeTiled bounds the
// backend's memory by a tile size instead, and gives the same image up to
// float rounding:
//
//   - The decoder is cut into segments that each end in one convolution:
//     [GroupNorm → SiLU →] [2× upsample →] conv [+ residual]. Between segments
//     the feature map lives on the host (float32, or bfloat16 when the
//     backend computes in bfloat16, where that is lossless).
//   - A segment runs tile by tile: a tile of its output plus a one-pixel halo
//     of input (what a 3×3 conv reads) is uploaded, computed and cropped. At
//     the image border the conv's own zero padding applies, as untiled.
//   - GroupNorm statistics stay global: while a segment's output tiles come
//     back, the per-group sums and sums of squares are accumulated (float64),
//     and the next segment normalises every tile with those statistics, as a
//     per-channel affine map (a diagonal 1×1 conv, the only per-channel
//     scale-and-shift the compute ops offer).
//   - The mid-block attention is global by nature and runs on the whole map
//     at latent resolution (h·w tokens, 512 wide for the real VAE: small).
//
// The cost is host↔backend traffic (TiledTraffic), so the full decode is
// preferred whenever it fits (see DecodeBytes, TiledBytes).

// segment is one step of the tiled decoder.
type segment struct {
	ci, co int
	attn   bool // the mid-block attention (global, not tiled)
	norm   bool // GroupNorm (global statistics) + SiLU before the conv
	up     bool // nearest 2× upsample before the conv
	down   bool // stride-2 conv (encoder Downsample2D; encoder_tiled.go)
	pad    int  // conv padding: 1 for 3×3, 0 for 1×1
	hasRes bool // add a residual after the conv:
	res    int  // the index of the map added (−1: the scaled latents)
	sc     bool // 1×1 conv_shortcut on the residual

	normW, normB compute.Tensor
	convW, convB compute.Tensor
	scW, scB     compute.Tensor
}

// segments lists the decoder as segments; map i is segment i's output, map
// −1 the scaled latents. d may be nil (shapes only, for the estimates).
func segments(cfg weights.VAEConfig, d *Decoder) []segment {
	n := len(cfg.BlockOutChannels)
	rev := make([]int, n)
	for i, ch := range cfg.BlockOutChannels {
		rev[n-1-i] = ch
	}
	var segs []segment
	add := func(s segment) { segs = append(segs, s) }
	addResnet := func(r *resnet, ci, co int) {
		a := segment{ci: ci, co: co, norm: true, pad: 1}
		// The residual is the resnet's input: the map before segment a.
		b := segment{ci: co, co: co, norm: true, pad: 1, hasRes: true, res: len(segs) - 1, sc: ci != co}
		if r != nil {
			a.normW, a.normB, a.convW, a.convB = r.norm1W, r.norm1B, r.conv1W, r.conv1B
			b.normW, b.normB, b.convW, b.convB = r.norm2W, r.norm2B, r.conv2W, r.conv2B
			b.scW, b.scB = r.scW, r.scB
		}
		add(a)
		add(b)
	}
	pick := func(f func(*Decoder) *resnet) *resnet {
		if d == nil {
			return nil
		}
		return f(d)
	}
	c0 := rev[0]
	in := segment{ci: cfg.LatentChannels, co: c0, pad: 1}
	if d != nil {
		in.convW, in.convB = d.convInW, d.convInB
	}
	add(in)
	addResnet(pick(func(d *Decoder) *resnet { return d.mid1 }), c0, c0)
	if cfg.MidBlockAddAttention == nil || *cfg.MidBlockAddAttention {
		add(segment{ci: c0, co: c0, attn: true})
	}
	addResnet(pick(func(d *Decoder) *resnet { return d.mid2 }), c0, c0)
	prev := c0
	for i, co := range rev {
		for j := 0; j <= cfg.LayersPerBlock; j++ {
			ci := co
			if j == 0 {
				ci = prev
			}
			addResnet(pick(func(d *Decoder) *resnet { return d.up[i].resnets[j] }), ci, co)
		}
		if i < n-1 {
			s := segment{ci: co, co: co, up: true, pad: 1}
			if d != nil {
				s.convW, s.convB = d.up[i].upW, d.up[i].upB
			}
			add(s)
		}
		prev = co
	}
	out := segment{ci: prev, co: cfg.OutChannels, norm: true, pad: 1}
	if d != nil {
		out.normW, out.normB, out.convW, out.convB = d.normOutW, d.normOutB, d.convOutW, d.convOutB
	}
	add(out)
	return segs
}

// lastUses returns, for each map (index i+1 for segment i's output, 0 for
// the latents), the last segment that reads it.
func lastUses(segs []segment) []int {
	last := make([]int, len(segs)+1)
	for i, s := range segs {
		last[i] = max(last[i], i) // map i is segment i's input
		if s.hasRes {
			last[s.res+1] = max(last[s.res+1], i)
		}
	}
	last[len(segs)] = len(segs) // the image is the result
	return last
}

// region is a half-open rectangle of a map: rows [y0, y1), columns [x0, x1).
type region struct{ y0, y1, x0, x1 int }

func (r region) h() int { return r.y1 - r.y0 }
func (r region) w() int { return r.x1 - r.x0 }

// tileGrid cuts an h×w map into tiles of at most t×t.
func tileGrid(h, w, t int) []region {
	var out []region
	for y := 0; y < h; y += t {
		for x := 0; x < w; x += t {
			out = append(out, region{y, min(y+t, h), x, min(x+t, w)})
		}
	}
	return out
}

// inputRegion is the part of the segment's input map (ih×iw) that output
// tile o needs, and the output region that input covers (o plus a halo,
// cropped afterwards).
func (s *segment) inputRegion(o region, ih, iw int) (in, out region) {
	in.y0, in.y1, out.y0, out.y1 = s.axis(o.y0, o.y1, ih)
	in.x0, in.x1, out.x0, out.x1 = s.axis(o.x0, o.x1, iw)
	return in, out
}

// axis is inputRegion along one axis: output [o0, o1) of an input of length n.
func (s *segment) axis(o0, o1, n int) (i0, i1, c0, c1 int) {
	if s.down {
		// Output row r reads input rows 2r .. 2r+2 (zero past the end); one
		// more zero row keeps the tile even for evenSamples.
		return 2 * o0, 2*o1 + 2, o0, o1
	}
	if s.up {
		// Upsampled row r is input row r/2; the conv reads rows o0−1 .. o1.
		if o0 > 0 {
			i0 = (o0 - 1) / 2
		}
		i1 = min(n, o1/2+1)
		return i0, i1, 2 * i0, 2 * i1
	}
	i0, i1 = max(0, o0-s.pad), min(n, o1+s.pad)
	return i0, i1, i0, i1
}

// hostMap is a feature map [C, H, W] kept on the host between segments,
// with the per-group sums the next GroupNorm needs.
type hostMap struct {
	c, h, w int
	f32     []float32
	bf      []uint16 // bfloat16 storage (backends that compute in bfloat16)
	sum     []float64
	sumSq   []float64
	groups  int
}

func newHostMap(c, h, w, groups int, bf16 bool) *hostMap {
	m := &hostMap{c: c, h: h, w: w, groups: groups}
	if bf16 {
		m.bf = make([]uint16, c*h*w)
	} else {
		m.f32 = make([]float32, c*h*w)
	}
	if groups > 0 {
		m.sum, m.sumSq = make([]float64, c), make([]float64, c)
	}
	return m
}

// parallel runs fn(lo, hi) over [0, n) on all cores.
func parallel(n int, fn func(lo, hi int)) {
	p := min(runtime.GOMAXPROCS(0), n)
	if p <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range p {
		lo, hi := i*n/p, (i+1)*n/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// read copies region r of every channel into dst [c, r.h, r.w].
func (m *hostMap) read(dst []float32, r region) {
	rh, rw := r.h(), r.w()
	parallel(m.c, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			for y := 0; y < rh; y++ {
				src := (ch*m.h+r.y0+y)*m.w + r.x0
				d := dst[(ch*rh+y)*rw : (ch*rh+y+1)*rw]
				if m.bf != nil {
					for x := range d {
						d[x] = weights.BF16ToF32(m.bf[src+x])
					}
				} else {
					copy(d, m.f32[src:src+rw])
				}
			}
		}
	})
}

// write stores the part o of src [c, s.h, s.w] (which covers region s) and
// adds its values to the channel sums.
func (m *hostMap) write(src []float32, s, o region) {
	sh, sw := s.h(), s.w()
	parallel(m.c, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var sum, sq float64
			for y := o.y0; y < o.y1; y++ {
				row := src[(ch*sh+y-s.y0)*sw+o.x0-s.x0:][:o.w()]
				at := (ch*m.h+y)*m.w + o.x0
				if m.bf != nil {
					for x, v := range row {
						m.bf[at+x] = weights.F32ToBF16(v)
					}
				} else {
					copy(m.f32[at:at+len(row)], row)
				}
				if m.sum != nil {
					for _, v := range row {
						sum += float64(v)
						sq += float64(v) * float64(v)
					}
				}
			}
			if m.sum != nil {
				m.sum[ch] += sum
				m.sumSq[ch] += sq
			}
		}
	})
}

// affine returns the per-channel scale and shift that apply GroupNorm with
// the map's global statistics and the gain w and bias b: y = a·x + s.
func (m *hostMap) affine(w, b []float32, eps float64, roundBF16 bool) (scale, shift []float32) {
	cg := m.c / m.groups
	n := float64(cg * m.h * m.w)
	scale, shift = make([]float32, m.c), make([]float32, m.c)
	for g := 0; g < m.groups; g++ {
		var s, q float64
		for ch := g * cg; ch < (g+1)*cg; ch++ {
			s += m.sum[ch]
			q += m.sumSq[ch]
		}
		mean := s / n
		rstd := 1 / math.Sqrt(max(0, q/n-mean*mean)+eps)
		for ch := g * cg; ch < (g+1)*cg; ch++ {
			a := float32(float64(w[ch]) * rstd)
			if roundBF16 {
				// The backend stores the scale in bfloat16: take the shift from
				// the rounded scale so that a·(x − mean) stays exact around the mean.
				a = weights.BF16ToF32(weights.F32ToBF16(a))
			}
			scale[ch] = a
			shift[ch] = float32(float64(b[ch]) - mean*float64(a))
		}
	}
	return scale, shift
}

// DecodeTiled is Decode computed in tiles of at most tile×tile output pixels
// (any positive size; multiples of 2^(blocks−1) waste least), with the
// backend's memory bounded by the tile size (TiledBytes) instead of the
// image size. Intermediate feature maps are kept on the host. The result
// matches Decode up to float rounding.
func (d *Decoder) DecodeTiled(ctx context.Context, latents []float32, h, w, tile int) ([]float32, error) {
	c := d.cfg
	if h <= 0 || w <= 0 || len(latents) != c.LatentChannels*h*w {
		return nil, &ShapeError{fmt.Sprintf("%d values for %d×%d×%d", len(latents), c.LatentChannels, h, w)}
	}
	if tile <= 0 {
		return nil, &ShapeError{fmt.Sprintf("tile size %d must be positive", tile)}
	}
	b := d.b
	probe := b.FromHost([]float32{0}, 1)
	bf16 := probe.DType() == weights.BF16
	b.Free(probe)

	segs := segments(c, d)
	lastUse := lastUses(segs)
	spatial := 1 << (len(c.BlockOutChannels) - 1)
	H, W := h*spatial, w*spatial

	// maps[i+1] is segment i's output; maps[0] the scaled latents.
	maps := make([]*hostMap, len(segs)+1)
	maps[0] = newHostMap(c.LatentChannels, h, w, 0, false)
	copy(maps[0].f32, d.Scale(latents))
	mapAt := func(i int) *hostMap { return maps[i+1] }
	mh, mw := h, w
	var buf []float32
	for i := range segs {
		s := &segs[i]
		in := mapAt(i - 1)
		if s.up {
			mh, mw = 2*mh, 2*mw
		}
		last := i == len(segs)-1
		groups := d.groups
		if last {
			groups = 0 // the image: no statistics, always float32
		}
		out := newHostMap(s.co, mh, mw, groups, bf16 && !last)
		if s.attn {
			if err := d.tiledAttention(d.attn, in, out, &buf); err != nil {
				return nil, err
			}
		} else {
			t := max(1, tile*mh/H)
			var res *hostMap
			if s.hasRes {
				res = mapAt(s.res)
			}
			if err := d.tiledSegment(ctx, s, in, res, out, t, bf16, &buf); err != nil {
				return nil, err
			}
		}
		maps[i+1] = out
		// Drop the host maps no later segment reads.
		for j := range i + 1 {
			if lastUse[j] <= i {
				maps[j] = nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	img := maps[len(segs)]
	if img.h != H || img.w != W {
		return nil, fmt.Errorf("vae: tiled decode produced %d×%d, want %d×%d", img.h, img.w, H, W)
	}
	return img.f32, nil
}

// tiledSegment runs segment s over out tile by tile.
func (d block) tiledSegment(ctx context.Context, s *segment, in, res, out *hostMap, t int, bf16 bool, buf *[]float32) error {
	b := d.b
	var scale, shift compute.Tensor
	if s.norm {
		w, bb := b.ToHost(s.normW), b.ToHost(s.normB)
		a, sh := in.affine(w, bb, normEps, bf16)
		diag := make([]float32, s.ci*s.ci)
		for ch, v := range a {
			diag[ch*s.ci+ch] = v
		}
		scale = b.FromHost(diag, s.ci, s.ci, 1, 1) // [ci, ci, 1, 1] diagonal
		shift = b.FromHost(sh, s.ci)
		defer b.Free(scale, shift)
	}
	upload := func(m *hostMap, r region) compute.Tensor {
		n := m.c * r.h() * r.w()
		if cap(*buf) < n {
			*buf = make([]float32, n)
		}
		m.readPadded((*buf)[:n], r)
		return b.FromHost((*buf)[:n], m.c, r.h(), r.w())
	}
	for k, o := range tileGrid(out.h, out.w, t) {
		ir, or := s.inputRegion(o, in.h, in.w)
		x := upload(in, ir) // [ci, ir]
		if s.norm {
			n := b.Conv2D(x, scale, shift, 0) // GroupNorm with global statistics [ci, ir]
			b.Free(x)
			x = b.SiLU(n)
			b.Free(n)
		}
		var y compute.Tensor
		switch {
		case s.down:
			y = downTile(b, x, s.convW, s.convB) // [co, or] of the stride-2 conv
			b.Free(x)
		case s.up:
			y = upsampleConvFree(b, x, s.convW, s.convB, s.pad) // [co, or] from the 2× upsampled [ci, or]
		default:
			y = b.Conv2D(x, s.convW, s.convB, s.pad) // [co, or]
			b.Free(x)
		}
		if s.hasRes {
			r := upload(res, or) // [ci_res, or]
			if s.sc {
				sc := b.Conv2D(r, s.scW, s.scB, 0) // [co, or]
				b.Free(r)
				r = sc
			}
			sum := b.Add(r, y)
			b.Free(r, y)
			y = sum
		}
		vals := b.ToHost(y)
		b.Free(y)
		if err := b.Err(); err != nil {
			return fmt.Errorf("vae: tiled decode: %w", err)
		}
		out.write(vals, or, o)
		if k%8 == 7 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// tiledAttention runs the mid-block attention on the whole map.
func (d block) tiledAttention(a *attention, in, out *hostMap, buf *[]float32) error {
	b := d.b
	n := in.c * in.h * in.w
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	all := region{0, in.h, 0, in.w}
	in.read((*buf)[:n], all)
	x := b.FromHost((*buf)[:n], in.c, in.h, in.w)
	y := d.attention(a, x) // frees x
	vals := b.ToHost(y)
	b.Free(y)
	if err := b.Err(); err != nil {
		return fmt.Errorf("vae: tiled decode: mid-block attention: %w", err)
	}
	out.write(vals, all, all)
	return nil
}

// DecodeBytes is the peak activation memory of Decode on an h×w latent, in
// bytes of elem bytes per value (2 for bfloat16, 4 for float32): the
// largest set of tensors Decode holds at once, not counting weights or a
// backend's op scratch (im2col buffers, attention score chunks).
func DecodeBytes(cfg weights.VAEConfig, h, w, elem int) uint64 {
	if checkConfig(cfg) != nil || h <= 0 || w <= 0 {
		return 0
	}
	segs := segments(cfg, nil)
	n := h * w
	peak := (cfg.LatentChannels + segs[0].co) * n // z + conv_in
	for i := 1; i < len(segs); i++ {
		s := segs[i]
		switch {
		case s.attn:
			peak = max(peak, 5*s.ci*n) // x, tokens/q/k/v, then o
		case s.up:
			peak = max(peak, 9*s.ci*n) // x, upsampled, conv output
			n *= 4
		case s.hasRes:
			a := segs[i-1]
			ci, co := a.ci, a.co
			p := max(3*ci, 2*ci+co, ci+2*co)
			if s.sc {
				p = max(p, ci+3*co)
			}
			peak = max(peak, p*n)
		case i == len(segs)-1:
			peak = max(peak, 2*s.ci*n, (s.ci+s.co)*n) // conv_norm_out, SiLU, conv_out
		}
	}
	return uint64(peak) * uint64(elem)
}

// extent sums up a segment's tiles: the largest tile's input and computed
// output areas, and the totals over all tiles (in pixels of the map).
type extent struct{ maxIn, maxOut, sumIn, sumOut int }

// tiledWalk calls fn for every segment of DecodeTiled's schedule with the
// extent of its tiles and the residual's channels (0: none). Tiles are
// products of a row range and a column range, so the extents come from the
// two axes separately. The global attention has one tile, the whole map.
func tiledWalk(cfg weights.VAEConfig, h, w, tile int, fn func(s *segment, e extent, resC int)) {
	if checkConfig(cfg) != nil || h <= 0 || w <= 0 {
		return
	}
	segs := segments(cfg, nil)
	spatial := 1 << (len(cfg.BlockOutChannels) - 1)
	H := h * spatial
	mh, mw := h, w
	chOf := func(m int) int {
		if m < 0 {
			return cfg.LatentChannels
		}
		return segs[m].co
	}
	// along returns the largest and total input and output lengths of the
	// tiles of an axis of n output values (in input values).
	along := func(s *segment, n, t, in int) (maxI, maxO, sumI, sumO int) {
		for a := 0; a < n; a += t {
			i0, i1, c0, c1 := s.axis(a, min(a+t, n), in)
			maxI, maxO = max(maxI, i1-i0), max(maxO, c1-c0)
			sumI, sumO = sumI+i1-i0, sumO+c1-c0
		}
		return
	}
	for i := range segs {
		s := &segs[i]
		ih, iw := mh, mw
		if s.up {
			mh, mw = 2*mh, 2*mw
		}
		if s.attn {
			a := mh * mw
			fn(s, extent{a, a, a, a}, 0)
			continue
		}
		resC := 0
		if s.hasRes {
			resC = chOf(s.res)
		}
		t := max(1, tile*mh/H)
		yi, yo, ysi, yso := along(s, mh, t, ih)
		xi, xo, xsi, xso := along(s, mw, t, iw)
		fn(s, extent{yi * xi, yo * xo, ysi * xsi, yso * xso}, resC)
	}
}

// TiledBytes is the peak activation memory DecodeTiled holds on the backend
// for an h×w latent and the given tile, in the units of DecodeBytes. It is
// set by the tile except for the mid-block attention, which runs on the
// whole latent-resolution map.
func TiledBytes(cfg weights.VAEConfig, h, w, tile, elem int) uint64 {
	peak := 0
	tiledWalk(cfg, h, w, tile, func(s *segment, e extent, resC int) {
		in, out := e.maxIn, e.maxOut
		if s.attn {
			peak = max(peak, 5*s.ci*in)
			return
		}
		fixed := 0
		p := 0
		if s.norm {
			fixed = s.ci*s.ci + s.ci // the diagonal scale and the shift
			p = 2 * s.ci * in        // input + normalised, then normalised + activated
		}
		if s.up {
			p = max(p, s.ci*in+s.ci*out)
		}
		p = max(p, s.ci*out+s.co*out) // conv input + output
		if resC > 0 {
			if s.sc {
				p = max(p, s.co*out+resC*out+s.co*out, 3*s.co*out)
			} else {
				p = max(p, 2*s.co*out+resC*out)
			}
		}
		peak = max(peak, fixed+p)
	})
	return uint64(peak) * uint64(elem)
}

// TiledTraffic is the number of bytes DecodeTiled moves between the host
// and the backend (float32 both ways) for an h×w latent and the tile: the
// price of tiling on a GPU, where each byte crosses the PCIe bus.
func TiledTraffic(cfg weights.VAEConfig, h, w, tile int) uint64 {
	var n uint64
	tiledWalk(cfg, h, w, tile, func(s *segment, e extent, resC int) {
		n += uint64(s.ci*e.sumIn + (s.co+resC)*e.sumOut)
	})
	return 4 * n
}
