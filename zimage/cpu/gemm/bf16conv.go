package gemm

import (
	"sync/atomic"
	"unsafe"
)

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
	sh, sw := g.srcDims()
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
			clear(row[g.pad+g.w:])
			if !g.up {
				cvtBF16(row[g.pad:g.pad+g.w], x[(c*g.h+iy)*g.w:][:g.w])
				continue
			}
			// The stored row rounded into the upper half of the
			// image row, then spread over it front to back (value i
			// lands at 2i and 2i+1 ≤ sw+i, never ahead of a value
			// not read yet).
			d := row[g.pad : g.pad+g.w]
			cvtBF16(d[sw:], x[(c*sh+iy/2)*sw:][:sw])
			for i := range sw {
				v := d[sw+i]
				d[2*i], d[2*i+1] = v, v
			}
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

// convTapOffsets returns the offset of every im2col row p = (c, dy, dx) in
// the padded bf16 image: (c·hp+dy)·wp+dx, so that B(p, (y, xo)) =
// img[offs[p] + y·wp+xo]. Computed once per convolution, shared by every
// panel.
func convTapOffsets(g *convGeom) []int {
	hp, wp := g.h+2*g.pad, g.w+2*g.pad
	offs := make([]int, 0, g.ci*g.kh*g.kw)
	for c := range g.ci {
		for dy := range g.kh {
			for dx := range g.kw {
				offs = append(offs, (c*hp+dy)*wp+dx)
			}
		}
	}
	return offs
}

// packPairsConv is packPairsN for the implicit im2col source, read from the
// padded bf16 copy of the image (src.bf16, see convImageBF16) at the tap
// offsets src.taps: each pair of taps is interleaved over a run of an
// output row by pairTaps, one call per output row the panel touches.
func packPairsConv(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) {
	out := words(panel)
	g := src.conv
	wp := g.w + 2*g.pad
	offs := src.taps[p0 : p0+kb/2*2]
	var last [2]int // an odd last tap, paired with the zero row
	if kb%2 == 1 {
		last[0] = src.taps[p0+kb-1]
	}
	zero := len(src.bf16) - wp
	y, xo := jbase/g.wo, jbase%g.wo
	for off := 0; off < cols; {
		n := min(cols-off, g.wo-xo)
		base := y*wp + xo
		pairTaps(out[off:], src.bf16, offs, n, nr, base)
		if kb%2 == 1 {
			last[1] = zero - base
			pairTaps(out[kb/2*nr+off:], src.bf16, last[:], n, nr, base)
		}
		off += n
		y, xo = y+1, 0
	}
}
