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
}

// convRow writes dst[jj] = B(p, j+jj) for jj < len(dst): the packers read
// the image directly instead of a materialized column matrix (the old
// im2col buffer was written once and copied again by the packing).
func convRow(dst, x []float32, g *convGeom, p, j int) {
	c, dy, dx := p/(g.kh*g.kw), (p/g.kw)%g.kh, p%g.kw
	// Output columns xo with 0 ≤ xo+dx-pad < w.
	xlo := max(0, g.pad-dx)
	xhi := min(g.wo, g.w+g.pad-dx)
	plane := x[c*g.h*g.w : (c+1)*g.h*g.w]
	y, xo := j/g.wo, j%g.wo
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
				src := plane[iy*g.w:]
				copy(seg[a-xo:b-xo], src[a+dx-g.pad:b+dx-g.pad])
				clear(seg[b-xo:])
			}
		}
		dst = dst[len(seg):]
		y, xo = y+1, 0
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
	if len(x) < ci*h*w || ho != h+2*pad-kh+1 || wo != w+2*pad-kw+1 || pad < 0 {
		return finish(ctx, stop, release, fmt.Errorf("%w: conv image %d values for %d×%d×%d, kernel %d×%d pad %d, output %d×%d",
			ErrShape, len(x), ci, h, w, kh, kw, pad, ho, wo))
	}
	g := &convGeom{ci: ci, h: h, w: w, kh: kh, kw: kw, pad: pad, ho: ho, wo: wo}
	if bias != nil && len(bias) < m {
		return finish(ctx, stop, release, fmt.Errorf("%w: conv bias %d values for %d channels", ErrShape, len(bias), m))
	}
	src := bSource{kind: srcConv, f32: x[:ci*h*w], n: n, k: k, conv: g}
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
