package gemm

import (
	"encoding/binary"
	"math"
	"sync/atomic"

	"github.com/zimage/zimage/weights"
)

// gemvMaxM is the largest m that skips packing: each row of B is read once,
// straight from its storage, and dotted with every row of A (the M = 1
// timestep/adaLN case is memory-bound; packing would only add traffic).
var gemvMaxM = 8

// gemvChunk is the k extent of one dot product call (16 KB of A).
const gemvChunk = 4096

// gemv computes C = A·Bᵀ (+ bias) for a transposed source and small m,
// parallel over rows of B.
func gemv(threads int, stop *atomic.Bool, c, a []float32, src *bSource, bias []float32, m, n, k int) {
	// About 8 tasks per thread for balance, each a multiple of 4 rows.
	rowsPer := max(16, roundUp(ceilDiv(n, 8*threads), 4))
	ntask := ceilDiv(n, rowsPer)
	parallelFor(threads, ntask, stop, func(_, t int) {
		j0 := t * rowsPer
		j1 := min(n, j0+rowsPer)
		var tmpBuf *[]float32
		var tmp []float32
		if src.kind != srcF32T { // widened rows for the tail and for F8
			tmpBuf = getBuf(4 * k)
			defer putBuf(tmpBuf)
			tmp = *tmpBuf
		}
		j := j0
		var sums [4]float32
		for ; j+4 <= j1 && dot4Available(); j += 4 {
			// k in chunks so the slice of A being reused stays in L1.
			for p0 := 0; p0 < k; p0 += gemvChunk {
				pn := min(gemvChunk, k-p0)
				for i := 0; i < m; i++ {
					dot4(&sums, a[i*k+p0:i*k+p0+pn], src, j, p0, tmp)
					cq := c[i*n+j : i*n+j+4 : i*n+j+4]
					if p0 == 0 {
						cq[0], cq[1], cq[2], cq[3] = sums[0], sums[1], sums[2], sums[3]
					} else {
						cq[0], cq[1], cq[2], cq[3] = cq[0]+sums[0], cq[1]+sums[1], cq[2]+sums[2], cq[3]+sums[3]
					}
				}
			}
		}
		for ; j < j1; j++ {
			row := rowF32(src, j, tmp)
			for i := 0; i < m; i++ {
				c[i*n+j] = dotGo(a[i*k:(i+1)*k], row)
			}
		}
		if bias != nil {
			for i := 0; i < m; i++ {
				crow := c[i*n+j0 : i*n+j1]
				for jj, bv := range bias[j0:j1] {
					crow[jj] += bv
				}
			}
		}
	})
}

// rowF32 returns row j of a transposed source as float32: the row itself
// for float32 storage, else widened into tmp (k values).
func rowF32(src *bSource, j int, tmp []float32) []float32 {
	if src.kind == srcF32T {
		return src.f32[j*src.k : (j+1)*src.k]
	}
	return segF32(src, j, 0, src.k, tmp)
}

// segF32 widens values p0..p0+len(dst[:cnt]) of row j of a raw source into
// dst and returns dst[:cnt].
func segF32(src *bSource, j, p0, cnt int, dst []float32) []float32 {
	dst = dst[:cnt]
	off := j*src.k + p0
	switch src.dt {
	case weights.F32:
		row := src.raw[off*4:][:cnt*4]
		for p := range dst {
			dst[p] = math.Float32frombits(binary.LittleEndian.Uint32(row[p*4:]))
		}
	case weights.BF16:
		row := src.raw[off*2:][:cnt*2]
		for p := range dst {
			dst[p] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(row[p*2:])) << 16)
		}
	case weights.F16:
		row := src.raw[off*2:][:cnt*2]
		for p := range dst {
			dst[p] = weights.F16ToF32(binary.LittleEndian.Uint16(row[p*2:]))
		}
	case weights.F8E4M3, weights.F8E5M2:
		tab := weights.F8E4M3Table()
		if src.dt == weights.F8E5M2 {
			tab = weights.F8E5M2Table()
		}
		for p, v := range src.raw[off : off+cnt] {
			dst[p] = tab[v]
		}
	}
	return dst
}

// dotGo is a plain float32 dot product with four partial sums.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	p := 0
	for ; p+4 <= len(a); p += 4 {
		s0 += a[p] * b[p]
		s1 += a[p+1] * b[p+1]
		s2 += a[p+2] * b[p+2]
		s3 += a[p+3] * b[p+3]
	}
	for ; p < len(a); p++ {
		s0 += a[p] * b[p]
	}
	return (s0 + s1) + (s2 + s3)
}

// bAt returns B(p, j) of a transposed source (element p of row j).
func bAt(src *bSource, j, p int) float32 {
	i := j*src.k + p
	if src.kind == srcF32T {
		return src.f32[i]
	}
	switch src.dt {
	case weights.F32:
		return math.Float32frombits(binary.LittleEndian.Uint32(src.raw[i*4:]))
	case weights.BF16:
		return weights.BF16ToF32(binary.LittleEndian.Uint16(src.raw[i*2:]))
	case weights.F16:
		return weights.F16ToF32(binary.LittleEndian.Uint16(src.raw[i*2:]))
	case weights.F8E4M3:
		return weights.F8E4M3Table()[src.raw[i]]
	case weights.F8E5M2:
		return weights.F8E5M2Table()[src.raw[i]]
	}
	return 0
}
