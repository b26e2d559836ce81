package gemm

import (
	"sync/atomic"
)

// Winograd F(2×2, 3×3) for the bf16 3×3 stride-1 convolutions (the VAE's
// bulk): each 2×2 output tile is Y = Aᵀ·[Σ_ci U_ξ ⊙ V_ξ]·A with
// U = G·g·Gᵀ (4×4 per weight kernel g) and V = Bᵀ·d·B (4×4 per input tile
// d), 16 products per tile and channel pair instead of 36. The 16 sums over
// ci are 16 GEMMs M_ξ[co, tile] = U_ξ[co, ci]·V_ξ[ci, tile] on the bf16
// pair kernel (U and V rounded to bf16 after a float32 transform, float32
// accumulation); the transforms are float32. Work is cut into chunks of
// winoCols tiles: a task transforms its chunk straight into the kernel's
// pair panels, runs the 16 GEMMs against U (packed once per call) and
// inverse-transforms into the output, so neither V nor M is ever
// materialized for the whole image.
//
//	Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//	G  = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
//	Aᵀ = [1 1 1 0; 0 1 -1 -1]

// WinogradMode selects how bf16 3×3 convolutions run.
type WinogradMode int32

const (
	// WinogradAuto uses Winograd where it is faster (see useWinograd).
	WinogradAuto WinogradMode = iota
	// WinogradOff always runs the direct (implicit im2col) bf16 GEMM.
	WinogradOff
	// WinogradOn runs every eligible convolution (bf16 on VDPBF16PS,
	// 3×3) with Winograd, whatever its size.
	WinogradOn
)

var winogradMode atomic.Int32

// SetWinograd selects the bf16 3×3 convolution algorithm for the whole
// process and returns the previous mode (for tests and benchmarks).
func SetWinograd(m WinogradMode) WinogradMode {
	return WinogradMode(winogradMode.Swap(int32(m)))
}

// winoCols is the number of tiles per chunk: a multiple of the kernel's nr.
var winoCols = 64

// winoRows is the largest block of output channels whose 16 M_ξ a task
// keeps at once (a multiple of the kernel's mr): 16·winoRows·winoCols
// floats, in L2.
var winoRows = 48

// useWinograd says whether a bf16 convolution of geometry g with m output
// channels runs with Winograd.
func useWinograd(g *convGeom, m int) bool {
	if g.kh != 3 || g.kw != 3 || !bf16Kernel.pairs || m <= gemvMaxM {
		return false
	}
	switch WinogradMode(winogradMode.Load()) {
	case WinogradOff:
		return false
	case WinogradOn:
		return true
	}
	// Measured on Zen 4 (see bench/README.md): the transforms cost about
	// as much as 16 products per tile per channel, so small channel counts
	// and small maps stay direct.
	return g.ci >= 16 && m >= 32 && g.ho*g.wo >= 256
}

// winoU returns the transformed weights U_ξ = G·g·Gᵀ of a [m, ci, 3, 3]
// packed as the kernel's A panels: for each ξ, roundUp(m, mr)/mr panels of
// kq = ⌈ci/2⌉ pairs (bf16 pairs along ci, zero past m and ci). release
// returns the scratch.
func winoU(threads int, stop *atomic.Bool, a []float32, m, ci, mr int) (u []float32, release func()) {
	kq := (ci + 1) / 2
	npanA := ceilDiv(m, mr)
	ubuf := getBuf(16 * npanA * mr * kq)
	u = *ubuf
	per := max(1, 2048/max(ci, 1)) // output channels per task
	parallelFor(threads, ceilDiv(npanA, max(1, per/mr)), stop, func(_, task int) {
		// Panels of this task; float32 U for mr channels, [16][mr][ci].
		ppt := max(1, per/mr)
		fb := getBuf(16 * mr * ci)
		defer putBuf(fb)
		f := *fb
		for r := task * ppt; r < min(npanA, (task+1)*ppt); r++ {
			rows := min(mr, m-r*mr)
			for i := range rows {
				co := r*mr + i
				for c := range ci {
					g := a[(co*ci+c)*9:][:9]
					// Rows: G·g, [4][3].
					var t [4][3]float32 // rows of G·g
					for j := range 3 {
						g0, g1, g2 := g[j], g[3+j], g[6+j]
						t[0][j] = g0
						t[1][j] = 0.5 * (g0 + g1 + g2)
						t[2][j] = 0.5 * (g0 - g1 + g2)
						t[3][j] = g2
					}
					// Columns: ·Gᵀ, [4][4].
					for k := range 4 {
						g0, g1, g2 := t[k][0], t[k][1], t[k][2]
						f[((4*k+0)*mr+i)*ci+c] = g0
						f[((4*k+1)*mr+i)*ci+c] = 0.5 * (g0 + g1 + g2)
						f[((4*k+2)*mr+i)*ci+c] = 0.5 * (g0 - g1 + g2)
						f[((4*k+3)*mr+i)*ci+c] = g2
					}
				}
			}
			for xi := range 16 {
				panel := u[(xi*npanA+r)*mr*kq:][:mr*kq]
				packAPanelPairs(panel, f[xi*mr*ci:], ci, 0, rows, 0, ci, mr)
			}
		}
	})
	return u, func() { putBuf(ubuf) }
}

// winoConv computes c [m, ho, wo] = conv(a, x) + bias with Winograd
// F(2×2, 3×3) in bf16 (see above). g must be a 3×3 stride-1 geometry.
func winoConv(stop *atomic.Bool, c, a, x, bias []float32, g *convGeom, m int) {
	kern := bf16Kernel
	mr, nr := kern.mr, kern.nr
	threads := numThreads()
	if m*g.ho*g.wo*g.ci*9 < inlineFlops {
		threads = 1
	}
	ci, kq := g.ci, (g.ci+1)/2
	th, tw := ceilDiv(g.ho, 2), ceilDiv(g.wo, 2)
	tiles := th * tw
	nt := roundUp(winoCols, nr)
	npan := nt / nr
	nchunk := ceilDiv(tiles, nt)
	npanA := ceilDiv(m, mr)

	u, doneU := winoU(threads, stop, a, m, ci, mr)
	defer doneU()

	// Split the output channels too when there are few chunks (small
	// maps), so that every thread has work.
	ncog := 1
	if threads > 1 && nchunk < 2*threads {
		ncog = min(npanA, ceilDiv(2*threads, nchunk))
	}
	cb := roundUp(winoRows, mr)

	vSize := 16 * npan * kq * nr // words
	fSize := 2 * 16 * nt         // two channels' float32 V
	rSize := 16 * (nt + 1)       // E/O rows of a segment, two passes
	mSize := 16 * cb * nt
	bufs := make([]*[]float32, min(threads, nchunk*ncog))
	for w := range bufs {
		bufs[w] = getBuf(vSize + fSize + rSize + mSize)
	}
	defer func() {
		for _, p := range bufs {
			putBuf(p)
		}
	}()

	parallelFor(threads, nchunk*ncog, stop, func(w, t int) {
		chunk, cog := t/ncog, t%ncog
		buf := *bufs[w]
		vp := words(buf[:vSize])
		vf := buf[vSize : vSize+fSize]
		rows := buf[vSize+fSize : vSize+fSize+rSize]
		mb := buf[vSize+fSize+rSize:][:mSize]
		t0 := chunk * nt
		nval := min(nt, tiles-t0)

		winoInput(vp, vf, rows, x, g, t0, nval, nt, kq, nr)

		plo := cog * npanA / ncog * mr
		phi := min(m, (cog+1)*npanA/ncog*mr)
		for co0 := plo; co0 < phi; co0 += cb {
			cbn := min(cb, phi-co0)
			ipan := ceilDiv(cbn, mr)
			for xi := range 16 {
				for ir := range ipan {
					ap := u[(xi*npanA+co0/mr+ir)*mr*kq:][:mr*kq]
					for p := range npan {
						bp := buf[(xi*npan+p)*kq*nr:][:kq*nr]
						kern.fn(kq, ap, bp, mb[(xi*cb+ir*mr)*nt+p*nr:], nr, nt, false)
					}
				}
			}
			winoOutput(c, mb, bias, g, co0, cbn, cb, t0, nval, nt, tw)
		}
	})
}

// winoInput writes V_ξ = Bᵀ·d·B of tiles t0..t0+nval of every channel of
// x as bf16 pair panels: vp[((ξ·npan+p)·kq+q)·nr+jj] = the pair (2q, 2q+1)
// of tile t0+p·nr+jj (zero for tiles past nval and a missing odd channel).
// vf (2·16·nt floats) and rows (16·(nt+1)) are scratch.
func winoInput(vp []uint32, vf, rows, x []float32, g *convGeom, t0, nval, nt, kq, nr int) {
	tw := ceilDiv(g.wo, 2)
	npan := nt / nr
	clear(vf)
	for q := range kq {
		for h := range 2 {
			c := 2*q + h
			if c >= g.ci {
				clear(vf[h*16*nt : (h+1)*16*nt]) // paired with zeros
				continue
			}
			plane := x[c*g.h*g.w : (c+1)*g.h*g.w]
			dst := vf[h*16*nt : (h+1)*16*nt]
			// One run of tiles of one tile row at a time.
			for j := 0; j < nval; {
				ty, tx := (t0+j)/tw, (t0+j)%tw
				n := min(nval-j, tw-tx)
				winoInputRun(dst[j:], rows, plane, g, ty, tx, n, nt)
				j += n
			}
		}
		for xi := range 16 {
			r0 := vf[xi*nt : (xi+1)*nt]
			r1 := vf[(16+xi)*nt : (17+xi)*nt]
			for p := range npan {
				out := vp[((xi*npan+p)*kq+q)*nr:][:nr]
				a, b := r0[p*nr:(p+1)*nr], r1[p*nr:(p+1)*nr]
				if pairRows(out, a, b) == 0 {
					for jj := range out {
						out[jj] = toBF16(a[jj]) | toBF16(b[jj])<<16
					}
				}
			}
		}
	}
}

// winoInputRun writes the 16 transformed values of n tiles (ty, tx..tx+n)
// of one channel plane to dst[ξ·nt + j], j < n. The four input rows are
// first split into even and odd columns (zero outside the image), so that
// tile j reads E[j], O[j], E[j+1], O[j+1] of each row; the row transform
// Bᵀ is applied to those arrays before the column transform.
func winoInputRun(dst, rows, plane []float32, g *convGeom, ty, tx, n, nt int) {
	m := n + 1
	// er[k], or[k]: row k of Bᵀ·d over the even / odd columns.
	var e, o [4][]float32
	for r := range 4 {
		e[r] = rows[(2*r)*m : (2*r+1)*m]
		o[r] = rows[(2*r+1)*m : (2*r+2)*m]
		iy := 2*ty - g.pad + r
		if iy < 0 || iy >= g.h {
			clear(e[r])
			clear(o[r])
			continue
		}
		src := plane[iy*g.w : (iy+1)*g.w]
		lo := 2*tx - g.pad // input column of E[0]
		// Columns lo+2j and lo+2j+1 are both inside for j in [ja, jb).
		ja := min(m, max(0, ceilDiv(-lo, 2)))
		jb := ja
		if g.w-lo >= 0 {
			jb = max(ja, min(m, (g.w-lo)/2))
		}
		er, or := e[r], o[r]
		edge := func(j0, j1 int) {
			for j := j0; j < j1; j++ {
				ix := lo + 2*j
				er[j], or[j] = 0, 0
				if ix >= 0 && ix < g.w {
					er[j] = src[ix]
				}
				if ix+1 >= 0 && ix+1 < g.w {
					or[j] = src[ix+1]
				}
			}
		}
		edge(0, ja)
		if jb > ja {
			s := src[lo+2*ja : lo+2*jb]
			ee, oo := er[ja:jb], or[ja:jb]
			for i := range ee {
				ee[i] = s[2*i]
				oo[i] = s[2*i+1]
			}
		}
		edge(jb, m)
	}
	// Row transform in place: (d0-d2, d1+d2, d2-d1, d1-d3).
	for _, a := range [2]*[4][]float32{&e, &o} {
		r0, r1, r2, r3 := a[0][:m], a[1][:m], a[2][:m], a[3][:m]
		for j := range r0 {
			d0, d1, d2, d3 := r0[j], r1[j], r2[j], r3[j]
			r0[j] = d0 - d2
			r1[j] = d1 + d2
			r2[j] = d2 - d1
			r3[j] = d1 - d3
		}
	}
	// Column transform of tile j: (E[j]-E[j+1], O[j]+E[j+1], E[j+1]-O[j],
	// O[j]-O[j+1]) of each transformed row k, to ξ = 4k+0..3.
	for k := range 4 {
		er, or := e[k][:m], o[k][:m]
		d0 := dst[(4*k+0)*nt:][:n]
		d1 := dst[(4*k+1)*nt:][:n]
		d2 := dst[(4*k+2)*nt:][:n]
		d3 := dst[(4*k+3)*nt:][:n]
		for j := range d0 {
			e0, o0, e1, o1 := er[j], or[j], er[j+1], or[j+1]
			d0[j] = e0 - e1
			d1[j] = o0 + e1
			d2[j] = e1 - o0
			d3[j] = o0 - o1
		}
	}
}

// winoOutput writes Y = Aᵀ·M·A (+ bias) of tiles t0..t0+nval for output
// channels co0..co0+cbn into c [m, ho, wo], reading M_ξ[i, j] at
// mb[(ξ·cb+i)·nt+j].
func winoOutput(c, mb, bias []float32, g *convGeom, co0, cbn, cb, t0, nval, nt, tw int) {
	ho, wo := g.ho, g.wo
	for i := range cbn {
		co := co0 + i
		var bv float32
		if bias != nil {
			bv = bias[co]
		}
		out := c[co*ho*wo : (co+1)*ho*wo]
		var mx [16][]float32
		for xi := range 16 {
			mx[xi] = mb[(xi*cb+i)*nt:][:nt]
		}
		for j := 0; j < nval; {
			ty, tx := (t0+j)/tw, (t0+j)%tw
			n := min(nval-j, tw-tx)
			y := 2 * ty
			full := n
			if 2*(tx+n) > wo {
				full-- // the last tile of the row has one column
			}
			r0 := out[y*wo : (y+1)*wo]
			var r1 []float32
			if y+1 < ho {
				r1 = out[(y+1)*wo : (y+2)*wo]
			}
			for jj := range n {
				s := j + jj
				// Rows: Aᵀ·M, [2][4].
				var a0, a1 [4]float32
				for q := range 4 {
					m0, m1, m2, m3 := mx[q][s], mx[4+q][s], mx[8+q][s], mx[12+q][s]
					a0[q] = m0 + m1 + m2
					a1[q] = m1 - m2 - m3
				}
				x0 := 2 * (tx + jj)
				r0[x0] = a0[0] + a0[1] + a0[2] + bv
				if jj < full {
					r0[x0+1] = a0[1] - a0[2] - a0[3] + bv
				}
				if r1 != nil {
					r1[x0] = a1[0] + a1[1] + a1[2] + bv
					if jj < full {
						r1[x0+1] = a1[1] - a1[2] - a1[3] + bv
					}
				}
			}
			j += n
		}
	}
}
