package gemm

import (
	"context"
	"fmt"
)

// convGeom is the implicit im2col matrix of a stride-1 zero-padded
// convolution of an image x [ci, h, w] with a kh×kw kernel: B [k, n] with
// k = ci·kh·kw, n = ho·wo and B(p, j) = x[c, y+dy-pad, xo+dx-pad] for
// p = (c, dy, dx), j = (y, xo), zero outside the image.
type convGeom struct {
	ci, h, w, kh, kw, pad, ho, wo int
	// up: the image is x [ci, h/2, w/2] read through a nearest-neighbour
	// 2× upsampling, image(c, y, xo) = x[c, y/2, xo/2] (ConvUp2BiasCtx);
	// every reader of the image (convRowAt, convRows, convImageBF16,
	// winoInputRun) duplicates the stored values as it copies them.
	up bool
}

// srcDims returns the height and width of the stored image: h, w, or
// h/2, w/2 under up.
func (g *convGeom) srcDims() (sh, sw int) {
	if g.up {
		return g.h / 2, g.w / 2
	}
	return g.h, g.w
}

// convRow writes dst[jj] = B(p, j+jj) for jj < len(dst): the packers read
// the image directly instead of a materialized column matrix (the old
// im2col buffer was written once and copied again by the packing).
func convRow(dst, x []float32, g *convGeom, p, j int) {
	convRowAt(dst, x, g, p/(g.kh*g.kw), (p/g.kw)%g.kh, p%g.kw, j/g.wo, j%g.wo)
}

// convRowAt is convRow for the tap (c, dy, dx) of row p from output column
// (y, xo) of column j.
func convRowAt(dst, x []float32, g *convGeom, c, dy, dx, y, xo int) {
	// Output columns xo with 0 ≤ xo+dx-pad < w.
	xlo := max(0, g.pad-dx)
	xhi := min(g.wo, g.w+g.pad-dx)
	sh, sw := g.srcDims()
	plane := x[c*sh*sw : (c+1)*sh*sw]
	for len(dst) > 0 {
		seg := dst[:min(len(dst), g.wo-xo)]
		iy := y + dy - g.pad
		if iy < 0 || iy >= g.h || xlo >= xhi {
			clear(seg)
		} else {
			a, b := max(xo, xlo), min(xo+len(seg), xhi)
			if a >= b {
				clear(seg)
			} else {
				clear(seg[:a-xo])
				if g.up {
					upRow(seg[a-xo:b-xo], plane[iy/2*sw:(iy/2+1)*sw], a+dx-g.pad)
				} else {
					src := plane[iy*g.w:]
					copy(seg[a-xo:b-xo], src[a+dx-g.pad:b+dx-g.pad])
				}
				clear(seg[b-xo:])
			}
		}
		dst = dst[len(seg):]
		y, xo = y+1, 0
	}
}

// convRows packs rows p0..p0+kb of B from column j into a panel:
// panel[p·nr+jj] = B(p0+p, j+jj) for jj < cols — convRow for each row, with
// the tap stepped rather than divided out per row and the common case, a
// panel inside one output row, inline (an fp32 convolution packs every
// image value kh·kw times, 64 at a time: the per-row arithmetic was as
// costly as the copy).
func convRows(panel []float32, nr, cols int, x []float32, g *convGeom, p0, kb, j int) {
	c, dy, dx := p0/(g.kh*g.kw), (p0/g.kw)%g.kh, p0%g.kw
	y, xo := j/g.wo, j%g.wo
	oneRow := xo+cols <= g.wo
	sh, sw := g.srcDims()
	for p := range kb {
		dst := panel[p*nr : p*nr+cols]
		if !oneRow {
			convRowAt(dst, x, g, c, dy, dx, y, xo)
		} else {
			iy := y + dy - g.pad
			a, b := max(xo, g.pad-dx), min(xo+cols, g.w+g.pad-dx) // inside the image
			if iy < 0 || iy >= g.h || a >= b {
				clear(dst)
			} else {
				clear(dst[:a-xo])
				if g.up {
					upRow(dst[a-xo:b-xo], x[(c*sh+iy/2)*sw:][:sw], a+dx-g.pad)
				} else {
					copy(dst[a-xo:b-xo], x[(c*sh+iy)*sw+a+dx-g.pad:][:b-a])
				}
				clear(dst[b-xo:])
			}
		}
		if dx++; dx == g.kw {
			if dx, dy = 0, dy+1; dy == g.kh {
				dy, c = 0, c+1
			}
		}
	}
}

// ConvCtx computes C [m, ho·wo] = A [m, ci·kh·kw] · im2col(x) for a
// stride-1 convolution with zero padding pad of x [ci, h, w], output
// [ho, wo], without materializing the column matrix: the B panels are
// packed straight from the image. In bf16 when bf16 (as MatMulBF16Ctx;
// large 3×3 convolutions as Winograd F(2×2, 3×3), see winograd.go and
// SetWinograd); otherwise the result equals MatMulCtx on the explicit
// im2col matrix bit for bit.
func ConvCtx(ctx context.Context, bf16 bool, c, a, x []float32, m, ci, h, w, kh, kw, pad, ho, wo int) error {
	return ConvBiasCtx(ctx, bf16, c, a, x, nil, m, ci, h, w, kh, kw, pad, ho, wo)
}

// ConvBiasCtx is ConvCtx plus bias[i] (nil: none) added to every value of
// output channel i, to each tile of C while it is in cache — the same
// values as adding it in a pass over C afterwards.
func ConvBiasCtx(ctx context.Context, bf16 bool, c, a, x, bias []float32, m, ci, h, w, kh, kw, pad, ho, wo int) error {
	return convBias(ctx, bf16, c, a, x, bias, m, ci, h, w, kh, kw, pad, ho, wo, false)
}

// ConvUp2BiasCtx is ConvBiasCtx on the nearest-neighbour 2× upsampling of
// x [ci, h, w], the image u [ci, 2h, 2w] with u[c, y, xo] = x[c, y/2, xo/2]
// (output [m, ho, wo], ho = 2h+2·pad-kh+1, wo likewise), bit for bit. It
// reads x in place: the packers, the padded bf16 image and the Winograd
// input transform duplicate each value as they stage it, so u is never
// stored.
func ConvUp2BiasCtx(ctx context.Context, bf16 bool, c, a, x, bias []float32, m, ci, h, w, kh, kw, pad, ho, wo int) error {
	return convBias(ctx, bf16, c, a, x, bias, m, ci, 2*h, 2*w, kh, kw, pad, ho, wo, true)
}

// convBias is ConvBiasCtx, on the 2× upsampling of x when up (h and w are
// the upsampled image's).
func convBias(ctx context.Context, bf16 bool, c, a, x, bias []float32, m, ci, h, w, kh, kw, pad, ho, wo int, up bool) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	k, n := ci*kh*kw, ho*wo
	if err := checkDims(m, n, k); err != nil {
		return finish(ctx, stop, release, err)
	}
	if err := checkLens(c, a, nil, m, n, k); err != nil {
		return finish(ctx, stop, release, err)
	}
	g := &convGeom{ci: ci, h: h, w: w, kh: kh, kw: kw, pad: pad, ho: ho, wo: wo, up: up}
	sh, sw := g.srcDims()
	if len(x) < ci*sh*sw || ho != h+2*pad-kh+1 || wo != w+2*pad-kw+1 || pad < 0 {
		return finish(ctx, stop, release, fmt.Errorf("%w: conv image %d values for %d×%d×%d, kernel %d×%d pad %d, output %d×%d",
			ErrShape, len(x), ci, sh, sw, kh, kw, pad, ho, wo))
	}
	if bias != nil && len(bias) < m {
		return finish(ctx, stop, release, fmt.Errorf("%w: conv bias %d values for %d channels", ErrShape, len(bias), m))
	}
	src := bSource{kind: srcConv, f32: x[:ci*sh*sw], n: n, k: k, conv: g}
	if k > 0 {
		src.rowBias = bias
	}
	if bf16 && n > 0 && k > 0 && useWinograd(g, m) {
		winoConv(stop, c, a, src.f32, bias, g, m)
		return finish(ctx, stop, release, nil)
	}
	if bf16 && m > gemvMaxM && n > 0 && k > 0 {
		// The bf16 kernel's pair packing reads the image rounded once.
		threads := numThreads()
		if m*n*k < inlineFlops {
			threads = 1
		}
		img, done := convImageBF16(stop, threads, src.f32, g)
		defer done()
		src.bf16, src.taps = img, convTapOffsets(g)
	}
	runPrec(stop, bf16, c, a, src, nil, m, n, k)
	if k == 0 && bias != nil { // no k block to add it to
		for i := range m {
			row := c[i*n : (i+1)*n]
			for j := range row {
				row[j] += bias[i]
			}
		}
	}
	return finish(ctx, stop, release, nil)
}

// upRow writes dst[i] = src[(a+i)/2]: len(dst) values of a row of the 2×
// upsampled image from column a on.
func upRow(dst, src []float32, a int) {
	if a%2 == 1 && len(dst) > 0 {
		dst[0] = src[a/2]
		dst, a = dst[1:], a+1
	}
	s := src[a/2:]
	for len(dst) >= 16 { // 8 values at a time, bounds checked once
		d, v := dst[:16:16], s[:8:8]
		d[0], d[1], d[2], d[3] = v[0], v[0], v[1], v[1]
		d[4], d[5], d[6], d[7] = v[2], v[2], v[3], v[3]
		d[8], d[9], d[10], d[11] = v[4], v[4], v[5], v[5]
		d[12], d[13], d[14], d[15] = v[6], v[6], v[7], v[7]
		dst, s = dst[16:], s[8:]
	}
	for len(dst) >= 2 {
		dst[0], dst[1] = s[0], s[0]
		dst, s = dst[2:], s[1:]
	}
	if len(dst) == 1 {
		dst[0] = s[0]
	}
}
