//go:build amd64 && !purego

#include "textflag.h"

// Vectorised elementwise kernels (AVX-512F). Every routine handles n a
// multiple of 16; the Go wrappers in vec_amd64.go do the tails.

// EXPZ computes Z0 = exp(Z0) for |Z0| ≤ 88 with the expf constants loaded in
// Z17..Z26 (see LOADEXP); clobbers Z1..Z3.
#define LOADEXP \
	VBROADCASTSS expk<>+0(SB), Z17 \
	VBROADCASTSS expk<>+4(SB), Z18 \
	VBROADCASTSS expk<>+8(SB), Z19 \
	VBROADCASTSS expk<>+12(SB), Z20 \
	VBROADCASTSS expk<>+16(SB), Z21 \
	VBROADCASTSS expk<>+20(SB), Z22 \
	VBROADCASTSS expk<>+24(SB), Z23 \
	VBROADCASTSS expk<>+28(SB), Z24 \
	VBROADCASTSS expk<>+32(SB), Z25 \
	VBROADCASTSS expk<>+36(SB), Z26

#define EXPZ \
	VMULPS Z17, Z0, Z1 \
	VRNDSCALEPS $0, Z1, Z1 \
	VFNMADD231PS Z18, Z1, Z0 \
	VFNMADD231PS Z19, Z1, Z0 \
	VMOVAPS Z20, Z2 \
	VFMADD213PS Z21, Z0, Z2 \
	VFMADD213PS Z22, Z0, Z2 \
	VFMADD213PS Z23, Z0, Z2 \
	VFMADD213PS Z24, Z0, Z2 \
	VFMADD213PS Z25, Z0, Z2 \
	VMULPS Z0, Z0, Z3 \
	VFMADD213PS Z0, Z3, Z2 \
	VADDPS Z26, Z2, Z2 \
	VSCALEFPS Z1, Z2, Z0

// expf constants, as in softmax_amd64.s (DATA symbols are per file).
DATA expk<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expk<>+4(SB)/4, $0x3f318000  // ln2 hi
DATA expk<>+8(SB)/4, $0xb95e8083  // ln2 lo
DATA expk<>+12(SB)/4, $0x39506967
DATA expk<>+16(SB)/4, $0x3ab743ce
DATA expk<>+20(SB)/4, $0x3c088908
DATA expk<>+24(SB)/4, $0x3d2aa9c1
DATA expk<>+28(SB)/4, $0x3e2aaaaa
DATA expk<>+32(SB)/4, $0x3f000000
DATA expk<>+36(SB)/4, $0x3f800000 // 1
GLOBL expk<>(SB), RODATA|NOPTR, $40

DATA clampc<>+0(SB)/4, $0x42c80000  // 100: e^100 overflows to +Inf, x/Inf = -0
DATA clampc<>+4(SB)/4, $0xc2b00000  // -88
GLOBL clampc<>(SB), RODATA|NOPTR, $8

// func siluAVX512(dst, src *float32, n int)
// dst[i] = src[i] / (1 + exp(-src[i])).
TEXT ·siluAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP
	VBROADCASTSS clampc<>+0(SB), Z27
	VBROADCASTSS clampc<>+4(SB), Z28
	SHRQ $4, CX
	JZ silu_done

silu_loop:
	VMOVUPS (SI), Z4
	VXORPS Z0, Z0, Z0
	VSUBPS Z4, Z0, Z0            // -x
	VMINPS Z27, Z0, Z0
	VMAXPS Z28, Z0, Z0
	EXPZ
	VADDPS Z26, Z0, Z0           // 1 + e^-x
	VDIVPS Z0, Z4, Z4            // x / (1 + e^-x)
	VMOVUPS Z4, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ silu_loop

silu_done:
	VZEROUPPER
	RET

// func swigluAVX512(dst, gate, up *float32, n int)
// dst[i] = silu(gate[i])·up[i].
TEXT ·swigluAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	LOADEXP
	VBROADCASTSS clampc<>+0(SB), Z27
	VBROADCASTSS clampc<>+4(SB), Z28
	SHRQ $4, CX
	JZ swiglu_done

swiglu_loop:
	VMOVUPS (SI), Z4
	VXORPS Z0, Z0, Z0
	VSUBPS Z4, Z0, Z0
	VMINPS Z27, Z0, Z0
	VMAXPS Z28, Z0, Z0
	EXPZ
	VADDPS Z26, Z0, Z0
	VDIVPS Z0, Z4, Z4
	VMULPS (DX), Z4, Z4
	VMOVUPS Z4, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ swiglu_loop

swiglu_done:
	VZEROUPPER
	RET

// func sumAVX512(x *float32, n int, lanes *[16]float32)
// lanes gets the 16 lane-wise sums of x[:n].
TEXT ·sumAVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ lanes+16(FP), DI
	VPXORD Z0, Z0, Z0
	SHRQ $4, CX
	JZ sum_done

sum_loop:
	VADDPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ sum_loop

sum_done:
	VMOVUPS Z0, (DI)
	VZEROUPPER
	RET

// func sqDevAVX512(x *float32, n int, mu float32, lanes *[16]float32)
// lanes gets the 16 lane-wise sums of (x[i]-mu)².
TEXT ·sqDevAVX512(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS mu+16(FP), Z16
	MOVQ lanes+24(FP), DI
	VPXORD Z0, Z0, Z0
	SHRQ $4, CX
	JZ sq_done

sq_loop:
	VMOVUPS (SI), Z1
	VSUBPS Z16, Z1, Z1
	VFMADD231PS Z1, Z1, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ sq_loop

sq_done:
	VMOVUPS Z0, (DI)
	VZEROUPPER
	RET

// func affineAVX512(dst, src *float32, n int, mu, sc, sh float32)
// dst[i] = (src[i]-mu)·sc + sh.
TEXT ·affineAVX512(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS mu+24(FP), Z16
	VBROADCASTSS sc+28(FP), Z17
	VBROADCASTSS sh+32(FP), Z18
	SHRQ $4, CX
	JZ aff_done

aff_loop:
	VMOVUPS (SI), Z0
	VSUBPS Z16, Z0, Z0
	VFMADD213PS Z18, Z17, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ aff_loop

aff_done:
	VZEROUPPER
	RET
