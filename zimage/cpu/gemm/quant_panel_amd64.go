//go:build amd64 && !purego

package gemm

import (
	"math"

	"golang.org/x/sys/cpu"

	"github.com/zimage/zimage/weights"
)

//go:generate go run gen_quant.go

// useQuantPanel enables the fused dequantize-and-transpose panel kernels
// (gen_quant.go; tests turn it off to cover the scratch path).
var useQuantPanel = cpu.X86.HasAVX512F

type qtrFunc func(dst *float32, dstStride int, src *byte, srcStride int, sc *float32, idx *int32, c0, n int)

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
	buf := getBuf(quantScaleFloats(src.dt) + 256)
	defer putBuf(buf)
	tab, tile := (*buf)[:quantScaleFloats(src.dt)], (*buf)[quantScaleFloats(src.dt):][:256]
	groups := cols / 16
	for g := range groups {
		base := (jbase + 16*g) * rb
		_ = src.raw[base+15*rb+b1*bb-1] // last byte read
		call := func(dst *float32, stride, c, n int) {
			fn(dst, stride, &src.raw[base+c/cpb*bb], rb, &tab[0], &idx[0], c%cpb, n)
		}
		if chi > clo {
			_ = panel[(16*chi-p0-1)*nr+16*g+15] // last value written
			call(&panel[(16*clo-p0)*nr+16*g], nr*4, clo, chi-clo)
		}
		for i, c := range [2]int{cl, ch - 1} {
			lo, hi := max(16*c, p0), min(16*c+16, p0+kb)
			if hi-lo == 16 || i == 1 && c == cl {
				continue // whole (done above), or the head again
			}
			call(&tile[0], 64, c, 1)
			for v := lo; v < hi; v++ {
				copy(panel[(v-p0)*nr+16*g:][:16], tile[(v-16*c)*16:][:16])
			}
		}
	}
	return groups * 16
}

type qrowFunc func(dst *float32, dstStride int, src *byte, srcStride int, sc *float32, idx *int32, nblk int)

func qrowKernel(dt weights.DType) qrowFunc {
	switch dt {
	case weights.Q8_0:
		return qrowQ8_0
	case weights.Q4_0:
		return qrowQ4_0
	case weights.Q4_1:
		return qrowQ4_1
	case weights.Q5_0:
		return qrowQ5_0
	case weights.Q5_1:
		return qrowQ5_1
	case weights.Q2_K:
		return qrowQ2_K
	case weights.Q3_K:
		return qrowQ3_K
	case weights.Q4_K:
		return qrowQ4_K
	case weights.Q5_K:
		return qrowQ5_K
	case weights.Q6_K:
		return qrowQ6_K
	}
	return nil
}

// dequant16Rows dequantizes 16 whole rows of B (row r at raw[r*rb:], k
// values) into dst (row r at dst[r*k:]) with the row kernels, and reports
// whether it could (sc: scratch of quantScaleFloats(dt) floats).
func dequant16Rows(dst []float32, raw []byte, rb int, dt weights.DType, k int, sc []float32) bool {
	fn := qrowKernel(dt)
	if !useQuantPanel || fn == nil || 15*rb > math.MaxInt32 || k == 0 {
		return fn != nil && k == 0
	}
	var idx [16]int32
	for r := range idx {
		idx[r] = int32(r * rb)
	}
	_ = raw[15*rb+rb-1]
	_ = dst[16*k-1]
	_ = sc[quantScaleFloats(dt)-1]
	fn(&dst[0], 4*k, &raw[0], rb, &sc[0], &idx[0], k/dt.BlockSize())
	return true
}
