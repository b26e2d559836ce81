package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zimage/zimage/weights"
)

// edgeBits are float32 bit patterns where bf16 rounding is easy to get
// wrong: ties (to even, both ways), denormals, the largest finite value
// (rounds to Inf), Inf, signalling and quiet NaNs of both signs.
var edgeBits = []uint32{
	0, 0x80000000, 0x3f800000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f80ffff,
	0x00000001, 0x00008000, 0x00018000, 0x0000ffff, 0x007fffff, 0x807fffff, 0x80008000,
	0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f800000, 0xff800000,
	0x7f800001, 0xff800001, 0x7fc00000, 0xffc00000, 0x7fffffff, 0x7f80ffff, 0x7fbfffff,
}

// randEdgeRow mixes random values, random bit patterns and edgeBits.
func randEdgeRow(r *rand.Rand, n int) []float32 {
	row := make([]float32, n)
	for i := range row {
		switch r.IntN(4) {
		case 0:
			row[i] = math.Float32frombits(edgeBits[r.IntN(len(edgeBits))])
		case 1:
			row[i] = math.Float32frombits(r.Uint32())
		default:
			row[i] = float32(r.NormFloat64())
		}
	}
	return row
}

// refPair is the pair word of two values from weights.F32ToBF16 (an
// independent reference of the rounding).
func refPair(lo, hi float32) uint32 {
	return uint32(weights.F32ToBF16(lo)) | uint32(weights.F32ToBF16(hi))<<16
}

// TestPackRowPairs checks the (assembly) strided row packing bit for bit
// against the bf16 reference on ragged lengths and strides, and that it
// writes nothing but its own words.
func TestPackRowPairs(t *testing.T) {
	if !usePackAsm {
		t.Log("no AVX-512 BW: checking the Go packing only")
	}
	r := rand.New(rand.NewPCG(11, 12))
	const sentinel = 0xdeadbeef
	for kb := 0; kb <= 131; kb++ {
		for _, stride := range []int{1, 2, 3, 5, 6, 7, 16} {
			row := randEdgeRow(r, kb)
			kq := (kb + 1) / 2
			out := make([]uint32, kq*stride+stride)
			for i := range out {
				out[i] = sentinel
			}
			packRowPairs(out, row, stride)
			for i, w := range out {
				q := i / stride
				want := uint32(sentinel)
				if i%stride == 0 && q < kq {
					hi := float32(0)
					if 2*q+1 < kb {
						hi = row[2*q+1]
					}
					want = refPair(row[2*q], hi)
				}
				if w != want {
					t.Fatalf("kb %d stride %d: word %d = %#08x, want %#08x", kb, stride, i, w, want)
				}
			}
		}
	}
}

// TestPairRows checks the (assembly) two-row interleave bit for bit.
func TestPairRows(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for n := 0; n <= 70; n++ {
		r0, r1 := randEdgeRow(r, n), randEdgeRow(r, n)
		out := make([]uint32, n+1)
		out[n] = 0xdeadbeef
		done := pairRows(out[:n], r0, r1)
		if usePackAsm && done != n {
			t.Fatalf("n %d: pairRows did %d", n, done)
		}
		for j := done; j < n; j++ {
			out[j] = toBF16(r0[j]) | toBF16(r1[j])<<16
		}
		for j := range n {
			if want := refPair(r0[j], r1[j]); out[j] != want {
				t.Fatalf("n %d: word %d = %#08x, want %#08x (%g, %g)", n, j, out[j], want, r0[j], r1[j])
			}
		}
		if out[n] != 0xdeadbeef {
			t.Fatalf("n %d: wrote past the end", n)
		}
	}
}

// TestPackAPanelPairs compares the A panel packing with and without the
// assembly on ragged rows and k ranges.
func TestPackAPanelPairs(t *testing.T) {
	defer func(u bool) { usePackAsm = u }(usePackAsm)
	r := rand.New(rand.NewPCG(15, 16))
	for _, mr := range []int{1, 4, 6, 14} {
		for rows := 1; rows <= mr; rows++ {
			for _, kb := range []int{1, 2, 15, 31, 32, 33, 64, 97, 200} {
				lda := kb + 5
				a := randEdgeRow(r, (rows+1)*lda)
				p0 := r.IntN(lda - kb + 1)
				kq := (kb + 1) / 2
				want := make([]float32, kq*mr)
				got := make([]float32, kq*mr)
				for i := range got {
					got[i], want[i] = 1, 1 // stale data: must be overwritten or cleared
				}
				usePackAsm = false
				packAPanelPairs(want, a, lda, 1, rows, p0, kb, mr)
				usePackAsm = hasPackAsm
				packAPanelPairs(got, a, lda, 1, rows, p0, kb, mr)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("mr %d rows %d kb %d: word %d = %#08x, want %#08x", mr, rows, kb, i,
							math.Float32bits(got[i]), math.Float32bits(want[i]))
					}
				}
			}
		}
	}
}

// BenchmarkPackAPanelPairs packs one 6-row A panel over k = 1024 (ns per
// value in ns/op ÷ 6144), with the Go loop and the assembly.
func BenchmarkPackAPanelPairs(b *testing.B) {
	defer func(u bool) { usePackAsm = u }(usePackAsm)
	const mr, kb = 6, 1024
	r := rand.New(rand.NewPCG(1, 2))
	a := randSlice(r, mr*kb)
	panel := make([]float32, mr*kb/2)
	for _, asm := range []bool{false, true} {
		if asm && !hasPackAsm {
			continue
		}
		name := map[bool]string{false: "go", true: "asm"}[asm]
		b.Run(name, func(b *testing.B) {
			usePackAsm = asm
			b.SetBytes(mr * kb * 4)
			for b.Loop() {
				packAPanelPairs(panel, a, kb, 0, mr, 0, kb, mr)
			}
		})
	}
}

// TestConvPairsBlocking checks the bf16 implicit-im2col packing against the
// explicit column matrix bit for bit with odd k blocks (pairs that straddle
// taps and channels), narrow column tasks (segments that start mid-row),
// rounding edge values in the image, and with the Go packing.
func TestConvPairsBlocking(t *testing.T) {
	defer func(k, n, f int, u bool) { kcMax, ncMax, inlineFlops, usePackAsm = k, n, f, u }(kcMax, ncMax, inlineFlops, usePackAsm)
	rng := rand.New(rand.NewPCG(17, 18))
	cases := []struct{ m, ci, h, w, kh, kw, pad int }{
		{8, 3, 5, 7, 3, 3, 1},
		{9, 4, 6, 70, 3, 3, 0},
		{12, 3, 9, 13, 3, 3, 2},
		{7, 5, 9, 11, 1, 3, 1},
		{13, 2, 3, 130, 3, 3, 1},
		{10, 3, 2, 2, 3, 3, 1},
	}
	for _, asm := range []bool{false, true} {
		usePackAsm = asm && hasPackAsm
		for _, blk := range [][2]int{{1024, 128}, {7, 64}, {13, 192}} {
			kcMax, ncMax, inlineFlops = blk[0], blk[1], 0
			for _, c := range cases {
				ho, wo := c.h+2*c.pad-c.kh+1, c.w+2*c.pad-c.kw+1
				k, n := c.ci*c.kh*c.kw, ho*wo
				a := randSlice(rng, c.m*k)
				x := randEdgeRow(rng, c.ci*c.h*c.w)
				for i, v := range x { // keep products finite: NaN/Inf only in the packing test
					if v != v || v > 1e30 || v < -1e30 {
						x[i] = 1
					}
				}
				col := explicitIm2col(x, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo)
				want := make([]float32, c.m*n)
				if err := MatMulBF16Ctx(t.Context(), want, a, col, c.m, n, k); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, c.m*n)
				if err := ConvCtx(t.Context(), true, got, a, x, c.m, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("asm %v blocks %v %+v: C[%d] = %v, want %v", asm, blk, c, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkConvBF16 times one bf16 3×3 convolution on one thread at the
// VAE's last-stage shape (128→128 channels) at two image sizes.
func BenchmarkConvBF16(b *testing.B) {
	defer SetThreads(0)
	SetThreads(1)
	for _, side := range []int{64, 256} {
		b.Run(fmt.Sprint(side), func(b *testing.B) {
			const m, ci = 128, 128
			r := rand.New(rand.NewPCG(1, 2))
			a, x := randSlice(r, m*ci*9), randSlice(r, ci*side*side)
			c := make([]float32, m*side*side)
			b.ReportMetric(0, "ns/op")
			start := time.Now()
			for b.Loop() {
				if err := ConvCtx(b.Context(), true, c, a, x, m, ci, side, side, 3, 3, 1, side, side); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*m*ci*9*float64(side*side)*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestBF16PackAsmExact runs the bf16 GEMMs with the assembly packing and
// with the Go loops: the packed words, hence the products, must be the same
// bit for bit (rounding edge values in both operands, ragged shapes, tiny
// blocks so that panels start mid-row).
func TestBF16PackAsmExact(t *testing.T) {
	if !hasPackAsm {
		t.Skip("no AVX-512 BW: only the Go packing exists")
	}
	defer func(k, n, f int, u bool) { kcMax, ncMax, inlineFlops, usePackAsm = k, n, f, u }(kcMax, ncMax, inlineFlops, usePackAsm)
	r := rand.New(rand.NewPCG(19, 20))
	finite := func(v []float32) []float32 {
		for i, x := range v {
			if x != x || x > 1e30 || x < -1e30 {
				v[i] = 0.5
			}
		}
		return v
	}
	for _, blk := range [][2]int{{1024, 128}, {37, 64}} {
		kcMax, ncMax, inlineFlops = blk[0], blk[1], 0
		for _, sh := range []shape{{7, 70, 33}, {13, 130, 97}, {50, 64, 200}, {6, 17, 64}} {
			a := finite(randEdgeRow(r, sh.m*sh.k))
			bt := finite(randEdgeRow(r, sh.n*sh.k))
			bw := make([]byte, 2*len(bt))
			weights.EncodeBF16(bw, bt)
			run := func(asm bool) [][]float32 {
				usePackAsm = asm
				outs := make([][]float32, 3)
				for i := range outs {
					outs[i] = make([]float32, sh.m*sh.n)
				}
				if err := MatMulBTF32BF16Ctx(t.Context(), outs[0], a, bt, nil, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				if err := MatMulBF16Ctx(t.Context(), outs[1], a, bt, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				if err := MatMulBTBF16(outs[2], a, bw, weights.BF16, nil, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				return outs
			}
			want, got := run(false), run(true)
			for o := range want {
				for i := range want[o] {
					if math.Float32bits(got[o][i]) != math.Float32bits(want[o][i]) {
						t.Fatalf("blocks %v %+v product %d: C[%d] = %v with the assembly, %v without", blk, sh, o, i, got[o][i], want[o][i])
					}
				}
			}
		}
	}
}

// TestCvtBF16 checks the conv image conversion bit for bit against the
// bf16 reference (NaN and denormals included, ragged lengths for the masked
// tail) and the tap pair interleave against the Go loop, both writing
// nothing past their words.
func TestCvtBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for n := 0; n <= 100; n++ {
		x := randEdgeRow(r, n)
		dst := make([]uint16, n+1)
		dst[n] = 0xbeef
		cvtBF16(dst[:n], x)
		for i := range n {
			if want := weights.F32ToBF16(x[i]); dst[i] != want {
				t.Fatalf("n %d: value %d = %#04x, want %#04x (%g)", n, i, dst[i], want, x[i])
			}
		}
		if dst[n] != 0xbeef {
			t.Fatalf("n %d: wrote past the end", n)
		}
	}
	img := make([]uint16, 300)
	for i := range img {
		img[i] = uint16(r.Uint32())
	}
	for n := 0; n <= 40; n++ {
		for _, nq := range []int{0, 1, 3} {
			const nr, base = 48, 7
			offs := make([]int, 2*nq)
			for i := range offs {
				offs[i] = r.IntN(len(img) - base - n + 1)
			}
			got := make([]uint32, nq*nr+1)
			for i := range got {
				got[i] = 0xdeadbeef
			}
			want := append([]uint32(nil), got...)
			pairTaps(got, img, offs, n, nr, base)
			pairTapsGo(want, img, offs, n, nr, base)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("n %d nq %d: word %d = %#08x, want %#08x", n, nq, i, got[i], want[i])
				}
			}
		}
	}
}

// TestTranspose16 checks Transpose16 (the assembly where the CPU has it,
// and the Go loop) against its definition, with strides past the widths.
func TestTranspose16(t *testing.T) {
	saved := useTranspose
	defer func() { useTranspose = saved }()
	for _, asm := range []bool{false, true} {
		if asm && !saved {
			t.Log("no AVX-512: the assembly transpose is not covered")
			continue
		}
		useTranspose = asm
		for _, n := range []int{16, 64, 128, 256, 20} {
			lds, ldd := n+5, 16+3
			src := make([]uint32, 16*lds)
			for i := range src {
				src[i] = uint32(i*2654435761 + 7)
			}
			dst := make([]uint32, (n-1)*ldd+16)
			Transpose16(dst, ldd, src, lds, n)
			for w := range n {
				for c := range 16 {
					if got, want := dst[w*ldd+c], src[c*lds+w]; got != want {
						t.Fatalf("asm=%v n=%d: dst[%d][%d] = %#x, want %#x", asm, n, w, c, got, want)
					}
				}
			}
		}
	}
}
