//go:build amd64 && !purego

#include "textflag.h"

// AVX2/FMA versions of the vector helpers in vec_amd64.s and
// softmax_amd64.s (8 lanes; n a multiple of 8, the Go wrappers do the
// tails). Same expf algorithm; 2^n is built in the exponent bits.

DATA expa<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expa<>+4(SB)/4, $0x3f318000  // ln2 hi
DATA expa<>+8(SB)/4, $0xb95e8083  // ln2 lo
DATA expa<>+12(SB)/4, $0x3f800000 // 1
DATA expa<>+16(SB)/4, $0xc2aecccd // -87.4: below, exp underflows to 0
DATA expa<>+20(SB)/4, $0x42b00000 // 88
DATA expa<>+24(SB)/4, $0x0000007f // 127 (int32)
GLOBL expa<>(SB), RODATA|NOPTR, $28

// Polynomial coefficients as 8-lane vectors (memory operands of the FMAs).
DATA polya<>+0(SB)/4, $0x39506967
DATA polya<>+4(SB)/4, $0x39506967
DATA polya<>+8(SB)/4, $0x39506967
DATA polya<>+12(SB)/4, $0x39506967
DATA polya<>+16(SB)/4, $0x39506967
DATA polya<>+20(SB)/4, $0x39506967
DATA polya<>+24(SB)/4, $0x39506967
DATA polya<>+28(SB)/4, $0x39506967
DATA polya<>+32(SB)/4, $0x3ab743ce
DATA polya<>+36(SB)/4, $0x3ab743ce
DATA polya<>+40(SB)/4, $0x3ab743ce
DATA polya<>+44(SB)/4, $0x3ab743ce
DATA polya<>+48(SB)/4, $0x3ab743ce
DATA polya<>+52(SB)/4, $0x3ab743ce
DATA polya<>+56(SB)/4, $0x3ab743ce
DATA polya<>+60(SB)/4, $0x3ab743ce
DATA polya<>+64(SB)/4, $0x3c088908
DATA polya<>+68(SB)/4, $0x3c088908
DATA polya<>+72(SB)/4, $0x3c088908
DATA polya<>+76(SB)/4, $0x3c088908
DATA polya<>+80(SB)/4, $0x3c088908
DATA polya<>+84(SB)/4, $0x3c088908
DATA polya<>+88(SB)/4, $0x3c088908
DATA polya<>+92(SB)/4, $0x3c088908
DATA polya<>+96(SB)/4, $0x3d2aa9c1
DATA polya<>+100(SB)/4, $0x3d2aa9c1
DATA polya<>+104(SB)/4, $0x3d2aa9c1
DATA polya<>+108(SB)/4, $0x3d2aa9c1
DATA polya<>+112(SB)/4, $0x3d2aa9c1
DATA polya<>+116(SB)/4, $0x3d2aa9c1
DATA polya<>+120(SB)/4, $0x3d2aa9c1
DATA polya<>+124(SB)/4, $0x3d2aa9c1
DATA polya<>+128(SB)/4, $0x3e2aaaaa
DATA polya<>+132(SB)/4, $0x3e2aaaaa
DATA polya<>+136(SB)/4, $0x3e2aaaaa
DATA polya<>+140(SB)/4, $0x3e2aaaaa
DATA polya<>+144(SB)/4, $0x3e2aaaaa
DATA polya<>+148(SB)/4, $0x3e2aaaaa
DATA polya<>+152(SB)/4, $0x3e2aaaaa
DATA polya<>+156(SB)/4, $0x3e2aaaaa
DATA polya<>+160(SB)/4, $0x3f000000
DATA polya<>+164(SB)/4, $0x3f000000
DATA polya<>+168(SB)/4, $0x3f000000
DATA polya<>+172(SB)/4, $0x3f000000
DATA polya<>+176(SB)/4, $0x3f000000
DATA polya<>+180(SB)/4, $0x3f000000
DATA polya<>+184(SB)/4, $0x3f000000
DATA polya<>+188(SB)/4, $0x3f000000
GLOBL polya<>(SB), RODATA|NOPTR, $192

// Register map while EXPY runs: Y6 log2e, Y7 ln2hi, Y8 ln2lo, Y9 -87.4,
// Y10 int 127, Y15 one; scratch Y1..Y3. Y4, Y5, Y11..Y14 belong to callers.
#define LOADEXP2 \
	VBROADCASTSS expa<>+0(SB), Y6 \
	VBROADCASTSS expa<>+4(SB), Y7 \
	VBROADCASTSS expa<>+8(SB), Y8 \
	VBROADCASTSS expa<>+16(SB), Y9 \
	VPBROADCASTD expa<>+24(SB), Y10 \
	VBROADCASTSS expa<>+12(SB), Y15

// EXPY sets Y0 = exp(Y0) for Y0 in [-87.4, 88] (callers clamp).
#define EXPY \
	VMULPS Y6, Y0, Y1 \
	VROUNDPS $0, Y1, Y1 \
	VFNMADD231PS Y7, Y1, Y0 \
	VFNMADD231PS Y8, Y1, Y0 \
	VMOVUPS polya<>+0(SB), Y2 \
	VFMADD213PS polya<>+32(SB), Y0, Y2 \
	VFMADD213PS polya<>+64(SB), Y0, Y2 \
	VFMADD213PS polya<>+96(SB), Y0, Y2 \
	VFMADD213PS polya<>+128(SB), Y0, Y2 \
	VFMADD213PS polya<>+160(SB), Y0, Y2 \
	VMULPS Y0, Y0, Y3 \
	VFMADD213PS Y0, Y3, Y2 \
	VADDPS Y15, Y2, Y2 \
	VCVTPS2DQ Y1, Y1 \
	VPADDD Y10, Y1, Y1 \
	VPSLLD $23, Y1, Y1 \
	VMULPS Y1, Y2, Y0

// func expSubAVX2(x *float32, n int, mx float32, sums *[8]float32)
// x[i] = exp(x[i]-mx); sums gets the 8 lane sums.
TEXT ·expSubAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ sums+24(FP), DI
	VBROADCASTSS mx+16(FP), Y4
	LOADEXP2
	VXORPS Y5, Y5, Y5
	SHRQ $3, CX
	JZ e2_done

e2_loop:
	VMOVUPS (SI), Y0
	VSUBPS Y4, Y0, Y0
	VCMPPS $1, Y9, Y0, Y11       // lanes below -87.4 become 0
	VMAXPS Y9, Y0, Y0
	EXPY
	VANDNPS Y0, Y11, Y0          // (not mask) and y
	VMOVUPS Y0, (SI)
	VADDPS Y0, Y5, Y5
	ADDQ $32, SI
	DECQ CX
	JNZ e2_loop

e2_done:
	VMOVUPS Y5, (DI)
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int, maxes *[8]float32)  (n a positive multiple of 8)
TEXT ·maxAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ maxes+16(FP), DI
	VMOVUPS (SI), Y0
	ADDQ $32, SI
	SHRQ $3, CX
	DECQ CX
	JZ m2_done

m2_loop:
	VMAXPS (SI), Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ m2_loop

m2_done:
	VMOVUPS Y0, (DI)
	VZEROUPPER
	RET

// func scaleAddAVX2(o, t *float32, n int, a float32)  o = o·a + t
TEXT ·scaleAddAVX2(SB), NOSPLIT, $0-28
	MOVQ o+0(FP), DI
	MOVQ t+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS a+24(FP), Y4
	SHRQ $3, CX
	JZ s2_done

s2_loop:
	VMOVUPS (DI), Y0
	VFMADD213PS (SI), Y4, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNZ s2_loop

s2_done:
	VZEROUPPER
	RET

// func siluAVX2(dst, src *float32, n int)  dst = src / (1 + exp(-src))
TEXT ·siluAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP2
	VBROADCASTSS expa<>+20(SB), Y12
	SHRQ $3, CX
	JZ si2_done

si2_loop:
	VMOVUPS (SI), Y4
	VXORPS Y0, Y0, Y0
	VSUBPS Y4, Y0, Y0
	VMINPS Y12, Y0, Y0
	VMAXPS Y9, Y0, Y0
	EXPY
	VADDPS Y15, Y0, Y0
	VDIVPS Y0, Y4, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ si2_loop

si2_done:
	VZEROUPPER
	RET

// func swigluAVX2(dst, gate, up *float32, n int)  dst = silu(gate)·up
TEXT ·swigluAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	LOADEXP2
	VBROADCASTSS expa<>+20(SB), Y12
	SHRQ $3, CX
	JZ sw2_done

sw2_loop:
	VMOVUPS (SI), Y4
	VXORPS Y0, Y0, Y0
	VSUBPS Y4, Y0, Y0
	VMINPS Y12, Y0, Y0
	VMAXPS Y9, Y0, Y0
	EXPY
	VADDPS Y15, Y0, Y0
	VDIVPS Y0, Y4, Y4
	VMULPS (DX), Y4, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ sw2_loop

sw2_done:
	VZEROUPPER
	RET

// func sumAVX2(x *float32, n int, lanes *[8]float32)
TEXT ·sumAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ lanes+16(FP), DI
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ su2_done

su2_loop:
	VADDPS (SI), Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ su2_loop

su2_done:
	VMOVUPS Y0, (DI)
	VZEROUPPER
	RET

// func sqDevAVX2(x *float32, n int, mu float32, lanes *[8]float32)
TEXT ·sqDevAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS mu+16(FP), Y4
	MOVQ lanes+24(FP), DI
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ sq2_done

sq2_loop:
	VMOVUPS (SI), Y1
	VSUBPS Y4, Y1, Y1
	VFMADD231PS Y1, Y1, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ sq2_loop

sq2_done:
	VMOVUPS Y0, (DI)
	VZEROUPPER
	RET

// func affineAVX2(dst, src *float32, n int, mu, sc, sh float32)  dst = (src-mu)·sc + sh
TEXT ·affineAVX2(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS mu+24(FP), Y4
	VBROADCASTSS sc+28(FP), Y5
	VBROADCASTSS sh+32(FP), Y6
	SHRQ $3, CX
	JZ af2_done

af2_loop:
	VMOVUPS (SI), Y0
	VSUBPS Y4, Y0, Y0
	VFMADD213PS Y6, Y5, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ af2_loop

af2_done:
	VZEROUPPER
	RET
