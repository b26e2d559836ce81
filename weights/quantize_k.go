package weights

import "math"

// Quantization to the k-quants (256-element super-blocks), following the
// reference (no importance matrix) algorithms of ggml-quants.c
// (quantize_row_q{2,3,4,5,6}_K_ref): per sub-block scales (and mins) found
// by a small least-squares search, then the scales themselves quantized
// to 4/6/8 bits against one f16 super-block scale, then the values
// re-quantized with the stored scales. gguf-py has no k-quant quantizer;
// TestQuantizeMatchesGGMLC checks these byte for byte against ggml's C
// (testdata/gguf/kquant, made by testdata/generators/kquant_ref from
// ggml-org/ggml d99724f2b141fed9e1a9f402213506c081433465, which is what
// llama.cpp's quantize writes without an imatrix when ggml-base is built
// without FMA contraction, as on x86-64). Every product that meets an add
// is rounded explicitly (float32(a*b)): Go may otherwise fuse it into an
// FMA (GOAMD64=v3, arm64), which changes some bytes, as contraction does
// in C.

const groupMaxEps = 1e-15

func quantizeK(dt DType) QuantizeFunc {
	switch dt {
	case Q2_K:
		return quantQ2_K
	case Q3_K:
		return quantQ3_K
	case Q4_K:
		return func(b []byte, x []float32) { quantQ45_K(b, x, 15) }
	case Q5_K:
		return func(b []byte, x []float32) { quantQ45_K(b, x, 31) }
	case Q6_K:
		return quantQ6_K
	}
	return nil
}

// nearestInt is ggml's nearest_int: adding 1.5·2^23 leaves f rounded to
// nearest, ties to even, in the low mantissa bits for |f| < 2^22. Beyond
// that, and for ±Inf and NaN (which Inf inputs or f16-overflowing scales
// produce), it gives C's values too (release builds skip its range
// assert), where int(math.RoundToEven) would depend on the platform.
func nearestInt(f float32) int {
	// float32(f): f is often a product, which must not fuse with the add.
	b := math.Float32bits(float32(f) + 12582912)
	return int(b&0x7fffff) - 0x400000
}

func abs32(f float32) float32 { return float32(math.Abs(float64(f))) }

// gtMax is ggml's "if (v > m) m = v": unlike Go's max it ignores a NaN v.
func gtMax(m, v float32) float32 {
	if v > m {
		return v
	}
	return m
}

func clampInt(v, lo, hi int) int { return min(max(v, lo), hi) }

// makeQxQuants finds a symmetric scale for n values quantized to
// [-nmax, nmax-1] (stored +nmax in L), weighted by x² (rmse_type 1).
func makeQxQuants(x []float32, nmax int, L []int8) float32 {
	var maxv, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, maxv = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	iscale := -float32(nmax) / maxv
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := v * v
		sumlx += float32(w * v * float32(l))
		suml2 += float32(w * float32(l) * float32(l))
	}
	scale := float32(0)
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / maxv
		sumlx, suml2 = 0, 0
		for _, v := range x {
			l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
			w := v * v
			sumlx += float32(w * v * float32(l))
			suml2 += float32(w * float32(l) * float32(l))
		}
		if suml2 > 0 && sumlx*sumlx > best*suml2 {
			for i, v := range x {
				L[i] = int8(nmax + clampInt(nearestInt(iscale*v), -nmax, nmax-1))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// makeQ3Quants is makeQxQuants' variant for Q3_K with a few rounds of
// coordinate refinement.
func makeQ3Quants(x []float32, nmax int, L []int8) float32 {
	var maxv, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, maxv = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	iscale := -float32(nmax) / maxv
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = int8(l)
		w := v * v
		sumlx += float32(w * v * float32(l))
		suml2 += float32(w * float32(l) * float32(l))
	}
	for range 5 {
		changed := 0
		for i, v := range x {
			w := v * v
			slx := sumlx - float32(w*v*float32(L[i]))
			if slx > 0 {
				sl2 := suml2 - float32(w*float32(L[i])*float32(L[i]))
				nl := clampInt(nearestInt(v*sl2/slx), -nmax, nmax-1)
				if nl != int(L[i]) {
					slx += float32(w * v * float32(nl))
					sl2 += float32(w * float32(nl) * float32(nl))
					if sl2 > 0 && slx*slx*suml2 > sumlx*sumlx*sl2 {
						L[i] = int8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range L {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQkx2Quants fits scale and min (x ≈ scale·L − min, L in [0, nmax])
// with a weighted least-squares search over nstep+1 candidate scales.
func makeQkx2Quants(x, weights []float32, nmax int, L, Laux []uint8, rmin, rdelta float32, nstep int, useMad bool) (scale, theMin float32) {
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < len(x); i++ {
		// ggml's strict comparisons, not Go's min and max (signed zeros, NaN)
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L)
		return 0, -lo
	}
	fn := float32(nmax)
	iscale := fn / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*(v-lo)), 0, nmax)
		L[i] = uint8(l)
		diff := float32(scale*float32(l)) + lo - v
		if useMad {
			diff = abs32(diff)
		} else {
			diff *= diff
		}
		bestErr += float32(weights[i] * diff)
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fn) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := clampInt(nearestInt(iscale*(v-lo)), 0, nmax)
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(w * fl * fl)
			sumXL += float32(w * fl * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var cur float32
			for i, v := range x {
				diff := float32(thisScale*float32(Laux[i])) + thisMin - v
				if useMad {
					diff = abs32(diff)
				} else {
					diff *= diff
				}
				cur += float32(weights[i] * diff)
			}
			if cur < bestErr {
				copy(L, Laux[:len(x)])
				bestErr, scale, lo = cur, thisScale, thisMin
			}
		}
	}
	return scale, -lo
}

func quantQ2_K(b []byte, x []float32) {
	var L, Laux [qk]uint8
	var weights [16]float32
	var scales, mins [16]float32
	var maxScale, maxMin float32
	for j := range 16 {
		for l := range 16 {
			weights[l] = abs32(x[16*j+l])
		}
		scales[j], mins[j] = makeQkx2Quants(x[16*j:16*j+16], weights[:], 3, L[16*j:16*j+16], Laux[:16], -0.5, 0.1, 15, true)
		maxScale, maxMin = gtMax(maxScale, scales[j]), gtMax(maxMin, mins[j])
	}
	sc := b[:16]
	clear(sc)
	if maxScale > 0 {
		iscale := 15 / maxScale
		for j := range 16 {
			sc[j] = uint8(nearestInt(iscale * scales[j]))
		}
		putF16(b[80:], maxScale/15)
	} else {
		putF16(b[80:], 0)
	}
	if maxMin > 0 {
		iscale := 15 / maxMin
		for j := range 16 {
			sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
		}
		putF16(b[82:], maxMin/15)
	} else {
		putF16(b[82:], 0)
	}
	d, dmin := f16at(b[80:]), f16at(b[82:])
	for j := range 16 {
		dl := d * float32(sc[j]&0xf)
		if dl == 0 {
			continue
		}
		dm := float32(dmin * float32(sc[j]>>4))
		for i := range 16 {
			L[16*j+i] = uint8(clampInt(nearestInt((x[16*j+i]+dm)/dl), 0, 3))
		}
	}
	qs := b[16:80]
	for j := 0; j < qk; j += 128 {
		for l := range 32 {
			qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

func quantQ3_K(b []byte, x []float32) {
	var L [qk]int8
	var scales [16]float32
	var maxScale, amax float32
	for j := range 16 {
		scales[j] = makeQ3Quants(x[16*j:16*j+16], 4, L[16*j:16*j+16])
		if a := abs32(scales[j]); a > amax {
			amax, maxScale = a, scales[j]
		}
	}
	hmask, qs, sc := b[:32], b[32:96], b[96:108]
	clear(sc)
	if maxScale != 0 {
		iscale := -32 / maxScale
		for j := range 16 {
			l := clampInt(int(int8(nearestInt(iscale*scales[j]))), -32, 31) + 32 // C stores it in an int8_t first
			if j < 8 {
				sc[j] = uint8(l & 0xf)
			} else {
				sc[j-8] |= uint8(l&0xf) << 4
			}
			sc[j%4+8] |= uint8(l>>4) << (2 * (j / 4))
		}
		putF16(b[108:], 1/iscale)
	} else {
		putF16(b[108:], 0)
	}
	d := f16at(b[108:])
	for j := range 16 {
		lo := sc[j%8] >> (4 * (j / 8)) & 0xf
		hi := sc[8+j%4] >> (2 * (j / 4)) & 3
		dl := d * float32(int(lo|hi<<4)-32)
		if dl == 0 {
			continue
		}
		for i := range 16 {
			L[16*j+i] = int8(clampInt(nearestInt(x[16*j+i]/dl), -4, 3) + 4)
		}
	}
	clear(hmask)
	for j := range qk {
		if L[j] > 3 {
			hmask[j%32] |= 1 << (j / 32)
			L[j] -= 4
		}
	}
	for j := 0; j < qk; j += 128 {
		for l := range 32 {
			qs[j/4+l] = uint8(L[j+l]) | uint8(L[j+l+32])<<2 | uint8(L[j+l+64])<<4 | uint8(L[j+l+96])<<6
		}
	}
}

// quantQ45_K quantizes a Q4_K (nmax 15) or Q5_K (nmax 31) block.
func quantQ45_K(b []byte, x []float32, nmax int) {
	var L, Laux [qk]uint8
	var weights [32]float32
	var scales, mins [8]float32
	var maxScale, maxMin float32
	rmin, rdelta, nstep := float32(-1), float32(0.1), 20
	if nmax == 31 {
		rmin, nstep = -0.5, 15
	}
	for j := range 8 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		av := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = av + abs32(v)
		}
		scales[j], mins[j] = makeQkx2Quants(xs, weights[:], nmax, L[32*j:32*j+32], Laux[:32], rmin, rdelta, nstep, false)
		maxScale, maxMin = gtMax(maxScale, scales[j]), gtMax(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := b[4:16]
	clear(sc)
	for j := range 8 {
		ls := min(63, uint8(nearestInt(invScale*scales[j]))) // uint8 first, as C
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j], sc[j+4] = ls, lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putF16(b, maxScale/63)
	putF16(b[2:], maxMin/63)
	d, dmin := f16at(b), f16at(b[2:])
	scs, ms := kScaleMin(sc)
	for j := range 8 {
		dl := d * float32(scs[j])
		if dl == 0 {
			continue
		}
		dm := float32(dmin * float32(ms[j]))
		for i := range 32 {
			L[32*j+i] = uint8(clampInt(nearestInt((x[32*j+i]+dm)/dl), 0, nmax))
		}
	}
	if nmax == 15 {
		qs := b[16:144]
		for j := 0; j < qk; j += 64 {
			for l := range 32 {
				qs[j/2+l] = L[j+l] | L[j+l+32]<<4
			}
		}
		return
	}
	qh, ql := b[16:48], b[48:176]
	clear(qh)
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < qk; n += 64 {
		for j := range 32 {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[n/2+j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
	}
}

func quantQ6_K(b []byte, x []float32) {
	var L [qk]int8
	var scales [16]float32
	var maxScale, maxAbs float32
	for ib := range 16 {
		s := makeQxQuants(x[16*ib:16*ib+16], 32, L[16*ib:16*ib+16])
		scales[ib] = s
		if a := abs32(s); a > maxAbs {
			maxAbs, maxScale = a, s
		}
	}
	if maxAbs < groupMaxEps {
		clear(b[:210])
		return
	}
	ql, qh, sc := b[:128], b[128:192], b[192:208]
	iscale := -128 / maxScale
	putF16(b[208:], 1/iscale)
	for ib := range 16 {
		sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	d := f16at(b[208:])
	for j := range 16 {
		dl := d * float32(int8(sc[j]))
		if dl == 0 {
			continue
		}
		for i := range 16 {
			L[16*j+i] = int8(clampInt(nearestInt(x[16*j+i]/dl), -32, 31) + 32)
		}
	}
	for j := 0; j < qk; j += 128 {
		qlj, qhj := ql[j/2:], qh[j/4:]
		for l := range 32 {
			q1, q2, q3, q4 := uint8(L[j+l])&0xf, uint8(L[j+l+32])&0xf, uint8(L[j+l+64])&0xf, uint8(L[j+l+96])&0xf
			qlj[l] = q1 | q3<<4
			qlj[l+32] = q2 | q4<<4
			qhj[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
		}
	}
}
