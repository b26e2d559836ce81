//go:build amd64 && !purego

package gemm

import (
	"math"

	"golang.org/x/sys/cpu"

	"github.com/zimage/zimage/weights"
)

//go:generate go run gen_quant.go gen_transpose.go

// useQuantPanel enables the generated kernels (gen_quant.go: panel and
// GEMV; they use AVX-512 F, BW, VL and VBMI); tests turn it off to cover
// the scratch paths.
var useQuantPanel = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VBMI

type qtrFunc func(dst *float32, dstStride int, src *byte, srcStride int, sc *float32, idx *int32, c0, n int, head, tail *float32)

func qtrKernel(dt weights.DType) qtrFunc {
	switch dt {
	case weights.Q8_0:
		return qtrQ8_0
	case weights.Q4_0:
		return qtrQ4_0
	case weights.Q4_1:
		return qtrQ4_1
	case weights.Q5_0:
		return qtrQ5_0
	case weights.Q5_1:
		return qtrQ5_1
	case weights.Q2_K:
		return qtrQ2_K
	case weights.Q3_K:
		return qtrQ3_K
	case weights.Q4_K:
		return qtrQ4_K
	case weights.Q5_K:
		return qtrQ5_K
	case weights.Q6_K:
		return qtrQ6_K
	}
	return nil
}

// packQuantFused packs the leading whole 16-row groups of a quantized
// micro-panel (see packQuantPanel) with the panel kernels: the 16-value
// chunks of k that lie inside p0..p0+kb go straight into the panel, a
// partial chunk at either end goes through a 16×16 tile. It returns the
// number of rows packed.
func packQuantFused(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) int {
	if !useQuantPanel || cols < 16 || kb <= 0 {
		return 0
	}
	fn := qtrKernel(src.dt)
	if fn == nil {
		return 0
	}
	bs, bb, rb := src.dt.BlockSize(), src.dt.BlockBytes(), src.rb
	cpb := bs / 16
	cl, ch := p0/16, ceilDiv(p0+kb, 16)     // chunks touched
	clo, chi := ceilDiv(p0, 16), (p0+kb)/16 // chunks wholly inside
	b1 := ceilDiv(ch, cpb)                  // blocks touched end
	if 15*rb > math.MaxInt32 {
		return 0 // row offsets are int32 gather indices
	}
	var idx [16]int32
	for r := range idx {
		idx[r] = int32(r * rb)
	}
	buf := getBuf(quantScaleFloats(src.dt) + 2*256)
	defer putBuf(buf)
	tab := (*buf)[:quantScaleFloats(src.dt)]
	head, tail := (*buf)[len(tab):][:256], (*buf)[len(tab)+256:][:256]
	// The partial chunks at either end (if any) go through head and tail;
	// one partial chunk alone is the head.
	hasHead := p0%16 != 0
	hasTail := (p0+kb)%16 != 0 && !(hasHead && ch-1 == cl)
	var hp, tp *float32
	if hasHead {
		hp = &head[0]
	}
	if hasTail {
		tp = &tail[0]
	}
	groups := cols / 16
	for g := range groups {
		base := (jbase + 16*g) * rb
		_ = src.raw[base+15*rb+b1*bb-1] // last byte read
		dst := &panel[16*g]
		if chi > clo {
			_ = panel[(16*chi-p0-1)*nr+16*g+15] // last value written
			dst = &panel[(16*clo-p0)*nr+16*g]
		}
		fn(dst, nr*4, &src.raw[base+cl/cpb*bb], rb, &tab[0], &idx[0], cl%cpb, ch-cl, hp, tp)
		for i, c := range [2]int{cl, ch - 1} {
			if i == 0 && !hasHead || i == 1 && !hasTail {
				continue
			}
			t := [2][]float32{head, tail}[i]
			for v := max(16*c, p0); v < min(16*c+16, p0+kb); v++ {
				copy(panel[(v-p0)*nr+16*g:][:16], t[(v-16*c)*16:][:16])
			}
		}
	}
	return groups * 16
}

type qscFunc func(sc *float32, src *byte, srcStride int, idx *int32, nblk int)

type qdotRMFunc func(a *float32, lda int, src *byte, srcStride int, sc *float32, nblk int, out *float32, tmp *byte)

type qdotSet struct {
	sc qscFunc
	rm [3]qdotRMFunc // rmShape rows of B × rows of A
}

// rmShape is the rows of B and of A of the qdotSet.rm kernels.
var rmShape = [3][2]int{{4, 1}, {4, 2}, {2, 4}}

var qdotSets = map[weights.DType]qdotSet{
	weights.Q8_0: {qscQ8_0, [3]qdotRMFunc{qdot4x1xQ8_0, qdot4x2xQ8_0, qdot2x4xQ8_0}},
	weights.Q4_0: {qscQ4_0, [3]qdotRMFunc{qdot4x1xQ4_0, qdot4x2xQ4_0, qdot2x4xQ4_0}},
	weights.Q4_1: {qscQ4_1, [3]qdotRMFunc{qdot4x1xQ4_1, qdot4x2xQ4_1, qdot2x4xQ4_1}},
	weights.Q5_0: {qscQ5_0, [3]qdotRMFunc{qdot4x1xQ5_0, qdot4x2xQ5_0, qdot2x4xQ5_0}},
	weights.Q5_1: {qscQ5_1, [3]qdotRMFunc{qdot4x1xQ5_1, qdot4x2xQ5_1, qdot2x4xQ5_1}},
	weights.Q2_K: {qscQ2_K, [3]qdotRMFunc{qdot4x1xQ2_K, qdot4x2xQ2_K, qdot2x4xQ2_K}},
	weights.Q3_K: {qscQ3_K, [3]qdotRMFunc{qdot4x1xQ3_K, qdot4x2xQ3_K, qdot2x4xQ3_K}},
	weights.Q4_K: {qscQ4_K, [3]qdotRMFunc{qdot4x1xQ4_K, qdot4x2xQ4_K, qdot2x4xQ4_K}},
	weights.Q5_K: {qscQ5_K, [3]qdotRMFunc{qdot4x1xQ5_K, qdot4x2xQ5_K, qdot2x4xQ5_K}},
	weights.Q6_K: {qscQ6_K, [3]qdotRMFunc{qdot4x1xQ6_K, qdot4x2xQ6_K, qdot2x4xQ6_K}},
}

// quantDotPick[m] picks the kernel (index into qdotSet.rm) for a block of
// m ≤ 8 remaining rows of A (chosen by measurement).
var quantDotPick = [9]int{0, 0, 1, 1, 2, 2, 2, 2, 2}

// gemvQuantFused does gemvQuant's work for the 16 rows g0.. of B (raw, row
// stride rb) with the fused kernels: the rows' scale tables once, then per
// group of 4 rows of B and k chunk the dot products straight from the
// blocks — 1, 2 or 4 rows of A against 4 or 2 rows of B (qdot<R>x<M>x*,
// each value dequantized once for all rows of A) — with dot4's arithmetic
// on the dequantized values. It
// reports false, doing nothing, where those kernels do not apply. tab needs
// k/BlockSize·quantScaleFloats(dt) floats.
func gemvQuantFused(c, a []float32, raw []byte, rb int, dt weights.DType, m, n, k, g0 int, tab []float32) bool {
	if !useQuantPanel || active.isa != "avx512" || 15*rb > math.MaxInt32 || k == 0 {
		return false
	}
	set, ok := qdotSets[dt]
	if !ok {
		return false
	}
	bs, bb, per := dt.BlockSize(), dt.BlockBytes(), quantScaleFloats(dt)
	var idx [16]int32
	for r := range idx {
		idx[r] = int32(r * rb)
	}
	_ = raw[16*rb-1]
	_ = tab[k/bs*per-1]
	_ = a[m*k-1]
	if m > 1 || dt.BlockSize() != 32 {
		// (qdot4x1 of these types converts its scales itself: gen_quant.go)
		set.sc(&tab[0], &raw[0], rb, &idx[0], k/bs)
	}
	var out [8]float32
	var tmp [1024]byte
	put := func(i, j int, v float32, first bool) {
		if first {
			c[i*n+g0+j] = v
		} else {
			c[i*n+g0+j] += v
		}
	}
	for j := 0; j < 16; j += 4 {
		for p0 := 0; p0 < k; p0 += gemvChunk {
			nb, b0 := min(gemvChunk, k-p0)/bs, p0/bs
			for i := 0; i < m; {
				q := quantDotPick[min(8, m-i)]
				R, M := rmShape[q][0], rmShape[q][1]
				for r0 := 0; r0 < 4; r0 += R {
					set.rm[q](&a[i*k+p0], 4*k, &raw[(j+r0)*rb+b0*bb], rb, &tab[b0*per+j+r0], nb, &out[0], &tmp[0])
					for ii := range M {
						for r := range R {
							put(i+ii, j+r0+r, out[ii*R+r], p0 == 0)
						}
					}
				}
				i += M
			}
		}
	}
	return true
}
