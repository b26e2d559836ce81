package vae

import (
	"context"
	"fmt"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// Tiled encoding: the encoder cut into the same kind of segments as the
// tiled decoder (tiled.go), each run tile by tile with the feature maps on
// the host and GroupNorm statistics kept global, so the backend's memory is
// bounded by the tile instead of the image. A Downsample2D segment reads
// its tile's input rows 2r .. 2r+2 (zero past the map: the right/bottom
// padding), runs the conv unpadded and keeps the even rows and columns —
// the products of the strided conv. The result matches Encode up to float
// rounding.

// encSegments lists the encoder as segments; map i is segment i's output,
// map −1 the image. e may be nil (shapes only).
func encSegments(cfg weights.VAEConfig, e *Encoder) []segment {
	var segs []segment
	add := func(s segment) { segs = append(segs, s) }
	addResnet := func(r *resnet, ci, co int) {
		a := segment{ci: ci, co: co, norm: true, pad: 1}
		b := segment{ci: co, co: co, norm: true, pad: 1, hasRes: true, res: len(segs) - 1, sc: ci != co}
		if r != nil {
			a.normW, a.normB, a.convW, a.convB = r.norm1W, r.norm1B, r.conv1W, r.conv1B
			b.normW, b.normB, b.convW, b.convB = r.norm2W, r.norm2B, r.conv2W, r.conv2B
			b.scW, b.scB = r.scW, r.scB
		}
		add(a)
		add(b)
	}
	boc := cfg.BlockOutChannels
	in := segment{ci: cfg.InChannels, co: boc[0], pad: 1}
	if e != nil {
		in.convW, in.convB = e.convInW, e.convInB
	}
	add(in)
	prev := boc[0]
	for i, co := range boc {
		for j := 0; j < cfg.LayersPerBlock; j++ {
			ci := co
			if j == 0 {
				ci = prev
			}
			var r *resnet
			if e != nil {
				r = e.down[i].resnets[j]
			}
			addResnet(r, ci, co)
		}
		if i < len(boc)-1 {
			s := segment{ci: co, co: co, down: true}
			if e != nil {
				s.convW, s.convB = e.down[i].downW, e.down[i].downB
			}
			add(s)
		}
		prev = co
	}
	mid := func(f func(*Encoder) *resnet) *resnet {
		if e == nil {
			return nil
		}
		return f(e)
	}
	addResnet(mid(func(e *Encoder) *resnet { return e.mid1 }), prev, prev)
	if cfg.MidBlockAddAttention == nil || *cfg.MidBlockAddAttention {
		add(segment{ci: prev, co: prev, attn: true})
	}
	addResnet(mid(func(e *Encoder) *resnet { return e.mid2 }), prev, prev)
	out := segment{ci: prev, co: 2 * cfg.LatentChannels, norm: true, pad: 1}
	if e != nil {
		out.normW, out.normB, out.convW, out.convB = e.normOutW, e.normOutB, e.convOutW, e.convOutB
	}
	add(out)
	if cfg.UseQuantConv {
		q := segment{ci: out.co, co: out.co}
		if e != nil {
			q.convW, q.convB = e.quantW, e.quantB
		}
		add(q)
	}
	return segs
}

// EncodeTiled is Encode computed in tiles of at most tile×tile pixels of
// each feature map's full-resolution equivalent (any positive size;
// multiples of Factor waste least), with the backend's memory bounded by the
// tile size instead of the image size. The mid-block attention runs on the
// whole map at latent resolution.
func (e *Encoder) EncodeTiled(ctx context.Context, img []float32, h, w, tile int) (*Posterior, error) {
	c, f := e.cfg, e.Factor()
	if h <= 0 || w <= 0 || h%f != 0 || w%f != 0 || len(img) != c.InChannels*h*w {
		return nil, &ShapeError{fmt.Sprintf("image: %d values for %d×%d×%d (sides must be positive multiples of %d)", len(img), c.InChannels, h, w, f)}
	}
	if tile <= 0 {
		return nil, &ShapeError{fmt.Sprintf("tile size %d must be positive", tile)}
	}
	b := e.b
	probe := b.FromHost([]float32{0}, 1)
	bf16 := probe.DType() == weights.BF16
	b.Free(probe)

	segs := encSegments(c, e)
	lastUse := lastUses(segs)
	outSeg := len(segs) - 1 // conv_norm_out + conv_out
	if c.UseQuantConv {
		outSeg--
	}
	maps := make([]*hostMap, len(segs)+1)
	maps[0] = newHostMap(c.InChannels, h, w, 0, false)
	copy(maps[0].f32, img)
	mapAt := func(i int) *hostMap { return maps[i+1] }
	mh, mw := h, w
	var buf []float32
	for i := range segs {
		s := &segs[i]
		in := mapAt(i - 1)
		if s.down {
			mh, mw = mh/2, mw/2
		}
		groups := e.groups
		last := i >= outSeg // the moments (and conv_out before a quant_conv)
		if last {
			groups = 0 // the moments: no statistics, always float32
		}
		out := newHostMap(s.co, mh, mw, groups, bf16 && !last)
		if s.attn {
			if err := e.tiledAttention(e.attn, in, out, &buf); err != nil {
				return nil, err
			}
		} else {
			t := max(1, tile*mh/h)
			var res *hostMap
			if s.hasRes {
				res = mapAt(s.res)
			}
			if err := e.tiledSegment(ctx, s, in, res, out, t, bf16, &buf); err != nil {
				return nil, err
			}
		}
		maps[i+1] = out
		for j := range i + 1 {
			if lastUse[j] <= i {
				maps[j] = nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	mom := maps[len(segs)]
	if mom.h != h/f || mom.w != w/f || mom.f32 == nil {
		return nil, fmt.Errorf("vae: tiled encode produced %d×%d, want %d×%d", mom.h, mom.w, h/f, w/f)
	}
	return posterior(mom.f32, c.LatentChannels, mom.h, mom.w), nil
}

// readPadded is read for a region that may extend past the map's bottom and
// right edges, which read as zeros.
func (m *hostMap) readPadded(dst []float32, r region) {
	if r.y1 <= m.h && r.x1 <= m.w {
		m.read(dst, r)
		return
	}
	in := region{r.y0, min(r.y1, m.h), r.x0, min(r.x1, m.w)}
	clear(dst)
	if in.h() <= 0 || in.w() <= 0 {
		return
	}
	tmp := make([]float32, m.c*in.h()*in.w())
	m.read(tmp, in)
	rh, rw := r.h(), r.w()
	for ch := 0; ch < m.c; ch++ {
		for y := 0; y < in.h(); y++ {
			copy(dst[(ch*rh+y)*rw:][:in.w()], tmp[(ch*in.h()+y)*in.w():][:in.w()])
		}
	}
}

// downTile is a tile of a Downsample2D segment: x [C, 2n+2, 2m+2] (the tile's
// input rows and columns 2·o0 .. 2·o1+2, zero past the image) → the stride-2
// conv's [Co, n, m]. Output (r, c) reads x rows 2r..2r+2 and columns
// 2c..2c+2, all inside the tile, so it is the pad-0 stride-1 conv's even
// samples; a Strided backend computes Downsample2D on the tile (whose extra
// last row and column, which read its zero padding, are cropped) at a
// quarter of the work.
func downTile(b compute.Backend, x, w, bias compute.Tensor) compute.Tensor {
	s, ok := b.(Strided)
	if !ok {
		return evenSamples(b, b.Conv2D(x, w, bias, 0))
	}
	y := s.Downsample2D(x, w, bias) // [Co, n+1, m+1]
	sh := y.Shape()
	co, n, m := sh[0], sh[1]-1, sh[2]-1
	cols := b.Slice(b.Reshape(y, co*(n+1), m+1), 0, m) // [Co·(n+1), m]
	b.Free(y)
	rows := b.Slice(b.Reshape(cols, co, (n+1)*m), 0, n*m) // [Co, n·m]
	b.Free(cols)
	out := b.Scale(b.Reshape(rows, co, n, m), 1, 0) // an owned [Co, n, m] (exact copy)
	b.Free(rows)
	return out
}
