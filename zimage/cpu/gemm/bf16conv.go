package gemm

import (
	"sync/atomic"
	"unsafe"
)

// convTap is one row p = (c, dy, dx) of the im2col matrix.
type convTap struct{ c, dy, dx int }

// convImageBF16 rounds the conv image to bf16 once per convolution, into a
// zero-padded copy [ci, h+2·pad, w+2·pad] followed by one zero row of
// w+2·pad values. The pair packing (which reads every value kh·kw times)
// then moves 16-bit values instead of re-reading and re-rounding float32
// per tap — the same numbers, since the rounding is per value — and every
// tap of an output row is one contiguous run of the padded image, with no
// edge cases. The scratch (about half the image) comes from the buffer
// pools; release returns it.
func convImageBF16(stop *atomic.Bool, threads int, x []float32, g *convGeom) (img []uint16, release func()) {
	hp, wp := g.h+2*g.pad, g.w+2*g.pad
	rows := g.ci * hp
	size := (rows + 1) * wp
	buf := getBuf((size + 1) / 2)
	img = unsafe.Slice((*uint16)(unsafe.Pointer(&(*buf)[0])), size)
	clear(img[rows*wp:])
	per := max(1, (1<<15)/wp) // padded rows per task
	parallelFor(threads, ceilDiv(rows, per), stop, func(_, t int) {
		for r := t * per; r < min(rows, (t+1)*per); r++ {
			c, iy := r/hp, r%hp-g.pad
			row := img[r*wp : (r+1)*wp]
			if iy < 0 || iy >= g.h {
				clear(row)
				continue
			}
			clear(row[:g.pad])
			cvtBF16(row[g.pad:g.pad+g.w], x[(c*g.h+iy)*g.w:][:g.w])
			clear(row[g.pad+g.w:])
		}
	})
	return img, func() { putBuf(buf) }
}

// cvtBF16Go is cvtBF16 in Go.
func cvtBF16Go(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = uint16(toBF16(v))
	}
}

// pairTapsGo is pairTaps in Go.
func pairTapsGo(out []uint32, img []uint16, offs []int, n, nr, base int) {
	for q := 0; 2*q+1 < len(offs); q++ {
		o := out[q*nr : q*nr+n]
		r0 := img[base+offs[2*q]:][:n]
		r1 := img[base+offs[2*q+1]:][:n]
		for j := range o {
			o[j] = uint32(r0[j]) | uint32(r1[j])<<16
		}
	}
}

// packPairsConv is packPairsN for the implicit im2col source, read from the
// padded bf16 copy of the image (src.bf16, see convImageBF16). Tap
// p = (c, dy, dx) of output column (y, xo) is img[(c·hp+dy)·wp+dx +
// y·wp+xo]: one offset per tap, plus one base per output row the panel
// touches, and each pair of taps is interleaved over a run of the row by
// pairTaps.
func packPairsConv(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) {
	out := words(panel)
	g := src.conv
	hp, wp := g.h+2*g.pad, g.w+2*g.pad
	var offBuf [1026]int
	offs := offBuf[:0]
	if kb+1 > len(offBuf) {
		offs = make([]int, 0, kb+1)
	}
	t := convTap{c: p0 / (g.kh * g.kw), dy: (p0 / g.kw) % g.kh, dx: p0 % g.kw}
	for range kb {
		offs = append(offs, (t.c*hp+t.dy)*wp+t.dx)
		t = stepTap(g, t)
	}
	odd := kb%2 == 1
	if odd {
		offs = append(offs, 0) // the zero row, set per output row below
	}
	zero := len(src.bf16) - wp
	y, xo := jbase/g.wo, jbase%g.wo
	for off := 0; off < cols; {
		n := min(cols-off, g.wo-xo)
		base := y*wp + xo
		if odd {
			offs[kb] = zero - base
		}
		pairTaps(out[off:], src.bf16, offs, n, nr, base)
		off += n
		y, xo = y+1, 0
	}
}

// stepTap is the tap of the next im2col row.
func stepTap(g *convGeom, t convTap) convTap {
	if t.dx++; t.dx == g.kw {
		if t.dx, t.dy = 0, t.dy+1; t.dy == g.kh {
			t.dy, t.c = 0, t.c+1
		}
	}
	return t
}
