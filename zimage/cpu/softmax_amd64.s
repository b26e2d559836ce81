//go:build amd64 && !purego

#include "textflag.h"

// Constants of expf (see exp.go), one float32 each.
DATA expc<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expc<>+4(SB)/4, $0x3f318000  // ln2 hi = 0.693359375
DATA expc<>+8(SB)/4, $0xb95e8083  // ln2 lo = -2.12194440e-4
DATA expc<>+12(SB)/4, $0x39506967 // 1.9875691500e-4
DATA expc<>+16(SB)/4, $0x3ab743ce // 1.3981999507e-3
DATA expc<>+20(SB)/4, $0x3c088908 // 8.3334519073e-3
DATA expc<>+24(SB)/4, $0x3d2aa9c1 // 4.1665795894e-2
DATA expc<>+28(SB)/4, $0x3e2aaaaa // 1.6666665459e-1
DATA expc<>+32(SB)/4, $0x3f000000 // 5.0000001201e-1
DATA expc<>+36(SB)/4, $0x3f800000 // 1
DATA expc<>+40(SB)/4, $0xc2aecccd // -87.4: below, the result underflows to 0
GLOBL expc<>(SB), RODATA|NOPTR, $44

// func expSubAVX512(x *float32, n int, mx float32, sums *[16]float32)
// x[i] = exp(x[i] - mx) for i < n (n a multiple of 16); sums gets the 16
// lane-wise sums of the results.
TEXT ·expSubAVX512(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ sums+24(FP), DI
	VBROADCASTSS mx+16(FP), Z16
	VBROADCASTSS expc<>+0(SB), Z17
	VBROADCASTSS expc<>+4(SB), Z18
	VBROADCASTSS expc<>+8(SB), Z19
	VBROADCASTSS expc<>+12(SB), Z20
	VBROADCASTSS expc<>+16(SB), Z21
	VBROADCASTSS expc<>+20(SB), Z22
	VBROADCASTSS expc<>+24(SB), Z23
	VBROADCASTSS expc<>+28(SB), Z24
	VBROADCASTSS expc<>+32(SB), Z25
	VBROADCASTSS expc<>+36(SB), Z26
	VBROADCASTSS expc<>+40(SB), Z27
	VPXORD Z15, Z15, Z15
	SHRQ $4, CX
	JZ done

loop:
	VMOVUPS (SI), Z0
	VSUBPS Z16, Z0, Z0           // x - mx
	VCMPPS $1, Z27, Z0, K1       // K1 = x < -87.4 (lanes to zero)
	VMULPS Z17, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1       // n = round(x·log2e)
	VFNMADD231PS Z18, Z1, Z0     // r = x - n·ln2hi
	VFNMADD231PS Z19, Z1, Z0     // r -= n·ln2lo
	VMOVAPS Z20, Z2
	VFMADD213PS Z21, Z0, Z2      // p = p·r + c
	VFMADD213PS Z22, Z0, Z2
	VFMADD213PS Z23, Z0, Z2
	VFMADD213PS Z24, Z0, Z2
	VFMADD213PS Z25, Z0, Z2
	VMULPS Z0, Z0, Z3            // r²
	VFMADD213PS Z0, Z3, Z2       // p·r² + r
	VADDPS Z26, Z2, Z2           // + 1
	VSCALEFPS Z1, Z2, Z2         // ·2^n
	VPXORD Z4, Z4, Z4
	VMOVAPS Z4, K1, Z2           // underflowed lanes = 0
	VMOVUPS Z2, (SI)
	VADDPS Z2, Z15, Z15
	ADDQ $64, SI
	DECQ CX
	JNZ loop

done:
	VMOVUPS Z15, (DI)
	VZEROUPPER
	RET

// func maxAVX512(x *float32, n int, maxes *[16]float32)
// maxes gets the 16 lane-wise maxima of x[:n] (n a positive multiple of 16).
TEXT ·maxAVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ maxes+16(FP), DI
	VMOVUPS (SI), Z0
	ADDQ $64, SI
	SHRQ $4, CX
	DECQ CX
	JZ mdone

mloop:
	VMAXPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ mloop

mdone:
	VMOVUPS Z0, (DI)
	VZEROUPPER
	RET

// func scaleAddAVX512(o, t *float32, n int, a float32)
// o[i] = o[i]·a + t[i] for i < n (n a multiple of 16).
TEXT ·scaleAddAVX512(SB), NOSPLIT, $0-28
	MOVQ o+0(FP), DI
	MOVQ t+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS a+24(FP), Z16
	SHRQ $4, CX
	JZ sdone

sloop:
	VMOVUPS (DI), Z0
	VFMADD213PS (SI), Z16, Z0    // o·a + t
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ $64, SI
	DECQ CX
	JNZ sloop

sdone:
	VZEROUPPER
	RET

// func softmaxRowBF16AVX512(x *float32, n int, m float32, dst *uint32, res *[17]float32)
// One row step of the bf16 attention's streaming softmax, fused: mx =
// max(m, x[:n]) (n a positive multiple of 16), then p = exp(x - mx) as in
// expSubAVX512, stored only as bfloat16 (VCVTNEPS2BF16, nearest even,
// denormals as zero) to dst: n/2 pair words. res[0:16] gets the 16 lane
// sums of p (float32, the order of expSubAVX512), res[16] gets mx. x is
// not written. VCVTNEPS2BF16 is emitted as bytes (Go 1.26's assembler
// lacks it; encodings from GNU as 2.40).
TEXT ·softmaxRowBF16AVX512(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ dst+24(FP), DI
	MOVQ res+32(FP), DX
	SHRQ $4, CX
	MOVQ SI, R8
	MOVQ CX, R9
	VBROADCASTSS m+16(FP), Z0

bmax:
	VMAXPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ bmax
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VMOVSS X0, 64(DX)
	VBROADCASTSS X0, Z16
	VBROADCASTSS expc<>+0(SB), Z17
	VBROADCASTSS expc<>+4(SB), Z18
	VBROADCASTSS expc<>+8(SB), Z19
	VBROADCASTSS expc<>+12(SB), Z20
	VBROADCASTSS expc<>+16(SB), Z21
	VBROADCASTSS expc<>+20(SB), Z22
	VBROADCASTSS expc<>+24(SB), Z23
	VBROADCASTSS expc<>+28(SB), Z24
	VBROADCASTSS expc<>+32(SB), Z25
	VBROADCASTSS expc<>+36(SB), Z26
	VBROADCASTSS expc<>+40(SB), Z27
	VPXORD Z15, Z15, Z15
	VPXORD Z4, Z4, Z4

bexp:
	VMOVUPS (R8), Z0
	VSUBPS Z16, Z0, Z0           // x - mx
	VCMPPS $1, Z27, Z0, K1       // K1 = x < -87.4 (lanes to zero)
	VMULPS Z17, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1       // n = round(x·log2e)
	VFNMADD231PS Z18, Z1, Z0     // r = x - n·ln2hi
	VFNMADD231PS Z19, Z1, Z0     // r -= n·ln2lo
	VMOVAPS Z20, Z2
	VFMADD213PS Z21, Z0, Z2      // p = p·r + c
	VFMADD213PS Z22, Z0, Z2
	VFMADD213PS Z23, Z0, Z2
	VFMADD213PS Z24, Z0, Z2
	VFMADD213PS Z25, Z0, Z2
	VMULPS Z0, Z0, Z3            // r²
	VFMADD213PS Z0, Z3, Z2       // p·r² + r
	VADDPS Z26, Z2, Z2           // + 1
	VSCALEFPS Z1, Z2, Z2         // ·2^n
	VMOVAPS Z4, K1, Z2           // underflowed lanes = 0
	VADDPS Z2, Z15, Z15
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x48; BYTE $0x72; BYTE $0xea // VCVTNEPS2BF16 Z2, Y5
	VMOVDQU Y5, (DI)
	ADDQ $64, R8
	ADDQ $32, DI
	DECQ R9
	JNZ bexp
	VMOVUPS Z15, (DX)
	VZEROUPPER
	RET

// func scaleBF16AVX512(dst *uint32, src *float32, n int, scale float32)
// dst gets src[:n]·scale rounded to bfloat16 (VCVTNEPS2BF16, nearest even,
// denormals as zero), n/2 pair words; n a multiple of 16.
TEXT ·scaleBF16AVX512(SB), NOSPLIT, $0-28
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Z16
	SHRQ $4, CX
	JZ qdone

qloop:
	VMULPS (SI), Z16, Z0
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x48; BYTE $0x72; BYTE $0xc8 // VCVTNEPS2BF16 Z0, Y1
	VMOVDQU Y1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ qloop

qdone:
	VZEROUPPER
	RET

// Degree-4 exp for the tile's probabilities, e^r ≈ 1 + r + r²(c2 + c3·r +
// c4·r²) on |r| ≤ ln2/2 (fitted near-minimax: relative error 5.3e-6,
// far below the bf16 rounding the probabilities get, 2^-9).
DATA expc4<>+0(SB)/4, $0x3f00035a // c2 = 0.500051127
DATA expc4<>+4(SB)/4, $0x3e2b8e59 // c3 = 0.167535196
DATA expc4<>+8(SB)/4, $0x3d291339 // c4 = 0.0412780973
GLOBL expc4<>(SB), RODATA|NOPTR, $12

// func softmaxTileBF16AVX512(s *float32, lds int, p *uint32, ldp int, rows, n int, m *float32, l *float64, alpha *float32)
// softmaxRowBF16AVX512 over the rows of a score tile, with the running
// state updated in place: for row r (scores s[r·lds:][:n], n a positive
// multiple of 16) mx = max(m[r], scores), the pairs p[r·ldp:][:n/2] =
// bf16(exp(score - mx)) with the degree-4 exp above (the sum below adds the
// same values), alpha[r] = exp(m[r] - mx) with the full one (0 when m[r] = -Inf),
// l[r] = l[r]·alpha[r] + Σ exp(score - mx) (float32 lane sums added as a
// tree, then float64), m[r] = mx.
TEXT ·softmaxTileBF16AVX512(SB), NOSPLIT, $0-72
	MOVQ s+0(FP), R8
	MOVQ lds+8(FP), R10
	SHLQ $2, R10
	MOVQ p+16(FP), R11
	MOVQ ldp+24(FP), R12
	SHLQ $2, R12
	MOVQ rows+32(FP), R13
	MOVQ n+40(FP), R14
	SHRQ $4, R14
	MOVQ m+48(FP), AX
	MOVQ l+56(FP), BX
	MOVQ alpha+64(FP), DX
	VBROADCASTSS expc<>+0(SB), Z17
	VBROADCASTSS expc<>+4(SB), Z18
	VBROADCASTSS expc<>+8(SB), Z19
	VBROADCASTSS expc<>+12(SB), Z20
	VBROADCASTSS expc<>+16(SB), Z21
	VBROADCASTSS expc<>+20(SB), Z22
	VBROADCASTSS expc<>+24(SB), Z23
	VBROADCASTSS expc<>+28(SB), Z24
	VBROADCASTSS expc<>+32(SB), Z25
	VBROADCASTSS expc<>+36(SB), Z26
	VBROADCASTSS expc<>+40(SB), Z27
	VBROADCASTSS expc4<>+0(SB), Z11
	VBROADCASTSS expc4<>+4(SB), Z12
	VBROADCASTSS expc4<>+8(SB), Z13
	VPXORD Z4, Z4, Z4
	TESTQ R13, R13
	JLE tdone

trow:
	// mx = max(m[r], row)
	VBROADCASTSS (AX), Z0
	VMOVAPS Z0, Z9                // m[r], kept for alpha
	MOVQ R8, SI
	MOVQ R14, CX

tmax:
	VMAXPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ tmax
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VMOVSS X0, (AX)               // m[r] = mx
	VBROADCASTSS X0, Z16

	// alpha = exp(m_old - mx), the loop's arithmetic on one vector
	VSUBPS Z16, Z9, Z0
	VCMPPS $1, Z27, Z0, K1
	VMULPS Z17, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1
	VFNMADD231PS Z18, Z1, Z0
	VFNMADD231PS Z19, Z1, Z0
	VMOVAPS Z20, Z2
	VFMADD213PS Z21, Z0, Z2
	VFMADD213PS Z22, Z0, Z2
	VFMADD213PS Z23, Z0, Z2
	VFMADD213PS Z24, Z0, Z2
	VFMADD213PS Z25, Z0, Z2
	VMULPS Z0, Z0, Z3
	VFMADD213PS Z0, Z3, Z2
	VADDPS Z26, Z2, Z2
	VSCALEFPS Z1, Z2, Z2
	VMOVAPS Z4, K1, Z2
	VMOVSS X2, (DX)               // alpha[r]
	VMOVAPS Z2, Z10

	// p = exp(row - mx): sums in Z15, bf16 to the pair row
	MOVQ R8, SI
	MOVQ R11, DI
	MOVQ R14, CX
	VPXORD Z15, Z15, Z15

texp:
	VMOVUPS (SI), Z0
	VSUBPS Z16, Z0, Z0
	VCMPPS $1, Z27, Z0, K1
	VMULPS Z17, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1
	VFNMADD231PS Z18, Z1, Z0
	VFNMADD231PS Z19, Z1, Z0
	VMOVAPS Z13, Z2
	VFMADD213PS Z12, Z0, Z2      // c4·r + c3
	VFMADD213PS Z11, Z0, Z2      // ·r + c2
	VMULPS Z0, Z0, Z3
	VFMADD213PS Z0, Z3, Z2
	VADDPS Z26, Z2, Z2
	VSCALEFPS Z1, Z2, Z2
	VMOVAPS Z4, K1, Z2
	VADDPS Z2, Z15, Z15
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x48; BYTE $0x72; BYTE $0xea // VCVTNEPS2BF16 Z2, Y5
	VMOVDQU Y5, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ texp

	// l = l·alpha + Σ (float32 tree, then float64)
	VEXTRACTF64X4 $1, Z15, Y1
	VADDPS Y1, Y15, Y15
	VEXTRACTF128 $1, Y15, X1
	VADDPS X1, X15, X15
	VPERMILPS $0x4e, X15, X1
	VADDPS X1, X15, X15
	VPERMILPS $0xb1, X15, X1
	VADDSS X1, X15, X15
	VCVTSS2SD X15, X15, X15
	VCVTSS2SD X10, X10, X10
	VMOVSD (BX), X1
	VMULSD X10, X1, X1
	VADDSD X15, X1, X1
	VMOVSD X1, (BX)

	ADDQ R10, R8
	ADDQ R12, R11
	ADDQ $4, AX
	ADDQ $8, BX
	ADDQ $4, DX
	DECQ R13
	JNZ trow

tdone:
	VZEROUPPER
	RET

// func scaleRowsAVX512(o *float32, ld int, rows, n int, alpha *float32)
// o[r·ld:][:n] *= alpha[r] for the rows whose alpha is not 1 (n a multiple
// of 16).
TEXT ·scaleRowsAVX512(SB), NOSPLIT, $0-40
	MOVQ o+0(FP), DI
	MOVQ ld+8(FP), R10
	SHLQ $2, R10
	MOVQ rows+16(FP), R13
	MOVQ n+24(FP), R14
	SHRQ $4, R14
	MOVQ alpha+32(FP), DX
	MOVL $0x3f800000, AX
	TESTQ R13, R13
	JLE sdone2

srow:
	CMPL (DX), AX
	JEQ snext
	VBROADCASTSS (DX), Z16
	MOVQ DI, SI
	MOVQ R14, CX
	TESTQ CX, CX
	JZ snext

sloop2:
	VMULPS (SI), Z16, Z0
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	DECQ CX
	JNZ sloop2

snext:
	ADDQ R10, DI
	ADDQ $4, DX
	DECQ R13
	JNZ srow

sdone2:
	VZEROUPPER
	RET
