package gemm

// convSeg is the part of a run of im2col columns that lies on one output
// row y: columns xo.. xo+n-1, at offset off in the panel row.
type convSeg struct{ y, xo, n, off int }

// convTap is one row p = (c, dy, dx) of the im2col matrix.
type convTap struct{ c, dy, dx int }

// zeroRow stands in for an im2col row that is all padding.
var zeroRow [256]float32

// packPairsConv is packPairsN for the implicit im2col source. The values of
// a row are contiguous in the image on each output row (shifted by dx), so
// both rows of a pair are converted straight from the image by pairRows,
// and only the columns that fall in the horizontal padding of one of them
// go through the scalar path (no gather copy, no divisions per row).
func packPairsConv(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) {
	out := words(panel)
	g := src.conv
	var segBuf [8]convSeg
	segs := segBuf[:0]
	y, xo := jbase/g.wo, jbase%g.wo
	for off := 0; off < cols; {
		n := min(cols-off, g.wo-xo)
		segs = append(segs, convSeg{y: y, xo: xo, n: n, off: off})
		off += n
		y, xo = y+1, 0
	}
	t := convTap{c: p0 / (g.kh * g.kw), dy: (p0 / g.kw) % g.kh, dx: p0 % g.kw}
	for q := 0; 2*q < kb; q++ {
		o := out[q*nr : q*nr+cols]
		t0, t1, has1 := t, convTap{}, 2*q+1 < kb
		t = stepTap(g, t)
		if has1 {
			t1, t = t, stepTap(g, t)
		}
		for _, s := range segs {
			pairSeg(o[s.off:s.off+s.n], src.f32, g, s, t0, t1, has1)
		}
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

// tapRange returns the image row of tap t on segment s, indexed so that
// row[xo] is the value of output column xo, for the columns [a, b) inside
// the image; ok is false when the whole segment is padding.
func tapRange(x []float32, g *convGeom, s convSeg, t convTap) (row []float32, a, b int, ok bool) {
	iy := s.y + t.dy - g.pad
	a, b = max(s.xo, g.pad-t.dx), min(s.xo+s.n, g.w+g.pad-t.dx)
	if iy < 0 || iy >= g.h || a >= b {
		return nil, 0, 0, false
	}
	base := (t.c*g.h+iy)*g.w + t.dx - g.pad // image index of output column 0
	return x[base+a : base+b], a, b, true
}

// pairSeg writes o[jj] = the pair (B(t0, col), B(t1, col)) for the columns
// col = s.xo+jj of segment s (B(t1) zero when !has1).
func pairSeg(o []uint32, x []float32, g *convGeom, s convSeg, t0, t1 convTap, has1 bool) {
	lo, hi := s.xo, s.xo+s.n
	r0, a0, b0, ok0 := tapRange(x, g, s, t0)
	if !ok0 {
		a0, b0 = lo, hi
	}
	var r1 []float32
	a1, b1, ok1 := lo, hi, false
	if has1 {
		if r1, a1, b1, ok1 = tapRange(x, g, s, t1); !ok1 {
			a1, b1 = lo, hi
		}
	}
	// Columns [ma, mb) are inside (or wholly padding for) both taps.
	ma, mb := max(a0, a1), min(b0, b1)
	done := ma
	if ma < mb && mb-ma <= len(zeroRow) {
		v0, v1 := zeroRow[:mb-ma], zeroRow[:mb-ma]
		if ok0 {
			v0 = r0[ma-a0 : mb-a0]
		}
		if ok1 {
			v1 = r1[ma-a1 : mb-a1]
		}
		done = ma + pairRows(o[ma-lo:mb-lo], v0, v1)
	}
	at := func(r []float32, a, b int, ok bool, col int) uint32 {
		if !ok || col < a || col >= b {
			return 0
		}
		return toBF16(r[col-a])
	}
	for col := lo; col < hi; col++ {
		if col == ma && done > ma {
			col = done - 1
			continue
		}
		o[col-lo] = at(r0, a0, b0, ok0, col) | at(r1, a1, b1, ok1, col)<<16
	}
}
