package gemm

import (
	"sync/atomic"
	"unsafe"
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
	// Measured on Zen 4 (BenchmarkConvWinograd, bench/README.md): with few
	// input channels the kernel's k loop (ci/2 pairs) is too short, and on
	// small maps the weight transform (per call) and the per-chunk input
	// transform of each channel group are not paid back.
	return g.ci >= 64 && m >= 64 && g.ho*g.wo >= 2048
}

// winoG is G⊗G: U_ξ = Σ_ab winoG[ξ][ab]·g_ab for ξ = 4i+j, ab = 3a+b,
// winoG[ξ][ab] = G[i][a]·G[j][b] (exact in float32).
var winoG = func() []float32 {
	g := [4][3]float32{{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}}
	t := make([]float32, 16*9)
	for i := range 4 {
		for j := range 4 {
			for a := range 3 {
				for b := range 3 {
					t[(4*i+j)*9+3*a+b] = g[i][a] * g[j][b]
				}
			}
		}
	}
	return t
}()

// winoU returns the transformed weights U_ξ = G·g·Gᵀ of a [m, ci, 3, 3]
// packed as the kernel's A panels: for each ξ, roundUp(m, mr)/mr panels of
// kq = ⌈ci/2⌉ pairs (bf16 pairs along ci, zero past m and ci). The float32
// transform of all m·ci kernels is one GEMM, U [16, m·ci] = winoG [16, 9] ·
// aᵀ (a read as [m·ci, 9]). release returns the scratch.
func winoU(threads int, stop *atomic.Bool, a []float32, m, ci, mr int) (u []float32, release func()) {
	kq := (ci + 1) / 2
	npanA := ceilDiv(m, mr)
	fb := getBuf(16 * m * ci)
	defer putBuf(fb)
	f := *fb
	run(stop, f, winoG, bSource{kind: srcF32T, f32: a[:m*ci*9], n: m * ci, k: 9}, nil, 16, m*ci, 9)
	ubuf := getBuf(16 * npanA * mr * kq)
	u = *ubuf
	parallelFor(threads, 16*npanA, stop, func(_, t int) {
		xi, r := t/npanA, t%npanA
		panel := u[t*mr*kq:][:mr*kq]
		packAPanelPairs(panel, f[xi*m*ci:], ci, r*mr, min(mr, m-r*mr), 0, ci, mr)
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

	// V_ξ [kq, ldv] pair words: the kernel reads its B panels in place
	// (row stride ldv); a run's last block of 16 tiles may pass nt.
	ldv := nt + 16
	vSize := 16 * kq * ldv
	rSize := 4 * winoRowLen(nt) // padded input rows of a run
	// M_ξ are ms floats apart: cb·nt plus one cache line, so that the 16
	// loads of the output transform (one per ξ) do not all fall in the same
	// L1 set (cb·nt·4 bytes is a multiple of 4 KiB).
	ms := cb*nt + 16
	mSize := 16 * ms
	bufs := make([]*[]float32, min(threads, nchunk*ncog))
	for w := range bufs {
		bufs[w] = getBuf(vSize + rSize + mSize)
	}
	defer func() {
		for _, p := range bufs {
			putBuf(p)
		}
	}()

	upZero := g.up && g.pad == 1
	parallelFor(threads, nchunk*ncog, stop, func(w, t int) {
		chunk, cog := t/ncog, t%ncog
		buf := *bufs[w]
		vp := buf[:vSize]
		rows := buf[vSize : vSize+rSize]
		mb := buf[vSize+rSize:][:mSize]
		t0 := chunk * nt
		nval := min(nt, tiles-t0)

		winoInput(vp, rows, x, g, t0, nval, ldv, kq)
		if upZero {
			for xi := range 16 {
				if winoUpZero(xi) {
					clear(mb[xi*ms : (xi+1)*ms])
				}
			}
		}

		plo := cog * npanA / ncog * mr
		phi := min(m, (cog+1)*npanA/ncog*mr)
		for co0 := plo; co0 < phi; co0 += cb {
			cbn := min(cb, phi-co0)
			ipan := ceilDiv(cbn, mr)
			for xi := range 16 {
				if upZero && winoUpZero(xi) {
					continue // V_ξ = 0, so M_ξ = 0: cleared above
				}
				for ir := range ipan {
					ap := u[(xi*npanA+co0/mr+ir)*mr*kq:][:mr*kq]
					for p := range npan {
						bp := vp[xi*kq*ldv+p*nr:]
						kern.fn(kq, ap, bp, mb[xi*ms+ir*mr*nt+p*nr:], ldv, nt, false)
					}
				}
			}
			winoOutput(c, mb, bias, g, co0, cbn, ms, t0, nval, nt, tw)
		}
	})
}

// winoUpZero reports whether V_ξ is zero for every tile of a 2×
// upsampled image with padding 1 (ξ = 4i+j with i = 2 or j = 2). Each
// 4×4 tile then starts on an odd row and column of the upsampled image
// (2t-1), so its rows 1 and 2 are the same stored row and likewise its
// columns 1 and 2 (or all are padding zeros); row 2 of Bᵀ is
// [0 -1 1 0], so (Bᵀ·d)₂ = d₂-d₁ = +0 exactly, and column 2 of B the same.
// The products M_ξ = U_ξ·V_ξ are then +0 for finite weights (the kernel's
// sums start at +0) and need not be computed: 9 GEMMs per chunk instead of
// 16, the same results bit for bit.
func winoUpZero(xi int) bool { return xi/4 == 2 || xi%4 == 2 }

// winoInput writes V_ξ = Bᵀ·d·B of tiles t0..t0+nval of every channel of
// x as bf16 pairs: the word vp[(ξ·kq+q)·ldv+j] holds channels 2q (low
// half) and 2q+1 (high half) of tile t0+j (a missing odd channel is zero;
// words past nval are garbage). rows (4·winoRowLen(nt)) is scratch.
func winoInput(vf, rows, x []float32, g *convGeom, t0, nval, ldv, kq int) {
	tw := ceilDiv(g.wo, 2)
	vp := unsafe.Slice((*uint16)(unsafe.Pointer(&vf[0])), 2*len(vf))
	ds := 2 * kq * ldv // uint16 values between ξ
	sh, sw := g.srcDims()
	ps := sh * sw // values per stored channel plane
	for c := range 2 * kq {
		q, h := c/2, c%2
		if c >= g.ci {
			for xi := range 16 {
				row := vp[2*(xi*kq+q)*ldv:][:2*ldv]
				for j := 1; j < len(row); j += 2 {
					row[j] = 0
				}
			}
			continue
		}
		plane := x[c*ps : (c+1)*ps]
		// One run of tiles of one tile row at a time.
		for j := 0; j < nval; {
			ty, tx := (t0+j)/tw, (t0+j)%tw
			n := min(nval-j, tw-tx)
			if canPrefetch && c+winoAhead < g.ci {
				winoPrefetch(x[(c+winoAhead)*ps:][:ps], g, ty, tx, n)
			}
			winoInputRun(vp[2*(q*ldv+j):], ds, h, rows, plane, g, ty, tx, n)
			j += n
		}
	}
}

// winoInputRun writes the 16 transformed values of n tiles (ty, tx..tx+n)
// of one channel plane, rounded to bf16, to dst[ξ·ds + 2j + hi],
// j < roundUp(n, 16) (values past n are those of zero-padded tiles). The four input rows the tiles read are
// copied first into rows (4 rows of winoRowLen(n) floats) with the
// padding as zeros, so that the transform has no edge cases. Under g.up
// the rows are those of the upsampled plane: each stored value twice, and
// a row that repeats the one above is that row's copy, not a second one.
func winoInputRun(dst []uint16, ds, hi int, rows, plane []float32, g *convGeom, ty, tx, n int) {
	l := winoRowLen(n)
	lo := 2*tx - g.pad // input column of rows[r][0]
	_, sw := g.srcDims()
	var p [4][]float32
	for r := range 4 {
		p[r] = rows[r*l : (r+1)*l]
		iy := 2*ty - g.pad + r
		if iy < 0 || iy >= g.h {
			clear(p[r])
			continue
		}
		a, b := max(0, lo), min(g.w, lo+l) // inside the image
		if a >= b {
			clear(p[r])
			continue
		}
		if !g.up {
			src := plane[iy*g.w : (iy+1)*g.w]
			clear(p[r][:a-lo])
			copy(p[r][a-lo:b-lo], src[a:b])
			clear(p[r][b-lo:])
			continue
		}
		if r > 0 && iy > 0 && iy/2 == (iy-1)/2 {
			p[r] = p[r-1] // the same stored row as the row above
			continue
		}
		clear(p[r][:a-lo])
		upRow(p[r][a-lo:b-lo], plane[iy/2*sw:(iy/2+1)*sw], a)
		clear(p[r][b-lo:])
	}
	winoIn(dst, ds, hi, p[0], p[1], p[2], p[3], ceilDiv(n, 16))
}

// winoAhead is how many channels ahead winoInput prefetches the input
// rows: the runs are short (a few cache lines per row), too short for the
// hardware prefetcher, and the image is usually out of cache (2 ahead:
// −15% CPU time for a 128→128 conv at 256²; 1–8 within 1%).
var winoAhead = 2

// winoPrefetch prefetches the input rows and columns a run of n tiles
// (ty, tx..) reads from plane.
func winoPrefetch(plane []float32, g *convGeom, ty, tx, n int) {
	y0, y1 := max(0, 2*ty-g.pad), min(g.h, 2*ty-g.pad+4)
	x0, x1 := max(0, 2*tx-g.pad), min(g.w, 2*(tx+n)-g.pad+2)
	if y0 >= y1 || x0 >= x1 {
		return
	}
	w := g.w
	if g.up { // the stored rows and columns the upsampled ones repeat
		y0, y1, x0, x1, w = y0/2, (y1-1)/2+1, x0/2, (x1-1)/2+1, g.w/2
	}
	_ = plane[(y1-1)*w+x1-1]
	prefetchRows(unsafe.Pointer(&plane[y0*w+x0]), 4*w, y1-y0, 4*(x1-x0))
}

// winoOutAhead is how many output channels ahead winoOutput prefetches
// the rows it will write (0: none): the output is usually out of cache,
// and each channel's rows of a chunk are short. One channel ahead saved
// 3–15% of a 128→128 conv at 256² and 64→64 at 512² (CPU time, 8 pairs).
var winoOutAhead = 1

// winoRowLen is the length of a padded input row for n tiles: whole blocks
// of 16 tiles, 2 columns each, plus the 2 columns the last tile overlaps.
func winoRowLen(n int) int { return 32*ceilDiv(n, 16) + 2 }

// winoInGo is winoIn in Go: for tile j < 16·nblk, d = rows p0..p3,
// columns 2j..2j+3, dst[ξ·ds + 2j + hi] = bf16((Bᵀ·d·B)_ξ). Row transform
// first, then columns, in the order the assembly uses (the results are
// equal bit for bit).
func winoInGo(dst []uint16, ds, hi int, p0, p1, p2, p3 []float32, nblk int) {
	n := 16 * nblk
	p0, p1, p2, p3 = p0[:2*n+2], p1[:2*n+2], p2[:2*n+2], p3[:2*n+2]
	for j := range n {
		var t [4][4]float32 // Bᵀ·d
		for c := range 4 {
			d0, d1, d2, d3 := p0[2*j+c], p1[2*j+c], p2[2*j+c], p3[2*j+c]
			t[0][c] = d0 - d2
			t[1][c] = d1 + d2
			t[2][c] = d2 - d1
			t[3][c] = d1 - d3
		}
		for k := range 4 {
			e0, o0, e1, o1 := t[k][0], t[k][1], t[k][2], t[k][3]
			dst[(4*k+0)*ds+2*j+hi] = uint16(toBF16(e0 - e1))
			dst[(4*k+1)*ds+2*j+hi] = uint16(toBF16(o0 + e1))
			dst[(4*k+2)*ds+2*j+hi] = uint16(toBF16(e1 - o0))
			dst[(4*k+3)*ds+2*j+hi] = uint16(toBF16(o0 - o1))
		}
	}
}

// winoOutput writes Y = Aᵀ·M·A (+ bias) of tiles t0..t0+nval for output
// channels co0..co0+cbn into c [m, ho, wo], reading M_ξ[i, j] at
// mb[ξ·ms+i·nt+j].
func winoOutput(c, mb, bias []float32, g *convGeom, co0, cbn, ms, t0, nval, nt, tw int) {
	ho, wo := g.ho, g.wo
	for i := range cbn {
		co := co0 + i
		var bv float32
		if bias != nil {
			bv = bias[co]
		}
		out := c[co*ho*wo : (co+1)*ho*wo]
		mx := mb[i*nt:]
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
			nb := full / 16 // whole blocks of 16 two-column tiles
			if r1 == nil {
				nb = 0
			}
			if canPrefetch && winoOutAhead > 0 && i+winoOutAhead < cbn {
				// The same rows of a later channel: out of cache too.
				o := (co+winoOutAhead)*ho*wo + y*wo + 2*tx
				rows := 2
				if r1 == nil {
					rows = 1
				}
				cols := min(2*n, wo-2*tx)
				_ = c[o+(rows-1)*wo+cols-1]
				prefetchRows(unsafe.Pointer(&c[o]), 4*wo, rows, 4*cols)
			}
			if nb > 0 {
				winoOut(r0[2*tx:], r1[2*tx:], mx[j:], ms, bv, nb)
			}
			for jj := 16 * nb; jj < n; jj++ {
				s := j + jj
				// Rows: Aᵀ·M, [2][4].
				var a0, a1 [4]float32
				for q := range 4 {
					m0, m1, m2, m3 := mx[q*ms+s], mx[(4+q)*ms+s], mx[(8+q)*ms+s], mx[(12+q)*ms+s]
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

// winoOutGo is winoOut in Go: for tile j < 16·nblk with M_ξ = m[ξ·ms+j],
// Y = Aᵀ·M·A + bias to r0[2j], r0[2j+1], r1[2j], r1[2j+1], in the order the
// assembly uses.
func winoOutGo(r0, r1, m []float32, ms int, bias float32, nblk int) {
	n := 16 * nblk
	r0, r1 = r0[:2*n], r1[:2*n]
	for j := range n {
		var a0, a1 [4]float32 // Aᵀ·M
		for q := range 4 {
			m0, m1, m2, m3 := m[q*ms+j], m[(4+q)*ms+j], m[(8+q)*ms+j], m[(12+q)*ms+j]
			a0[q] = m0 + m1 + m2
			a1[q] = m1 - m2 - m3
		}
		r0[2*j] = a0[0] + a0[1] + a0[2] + bias
		r0[2*j+1] = a0[1] - a0[2] - a0[3] + bias
		r1[2*j] = a1[0] + a1[1] + a1[2] + bias
		r1[2*j+1] = a1[1] - a1[2] - a1[3] + bias
	}
}
