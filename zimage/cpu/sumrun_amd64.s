//go:build amd64 && !purego

#include "textflag.h"

// Four sumBlockLen (1024-value) blocks at once, one accumulator per block:
// each block's 16 lane sums come out exactly as sqDevAVX512 computes them
// for that block alone, but the four dependency chains overlap.

// func sqDevBlocks4AVX512(x *float32, mu float32, lanes *[4][16]float32)
TEXT ·sqDevBlocks4AVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	VBROADCASTSS mu+8(FP), Z16
	MOVQ lanes+16(FP), DI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	MOVQ $64, CX

sq4_loop:
	VMOVUPS (SI), Z4
	VMOVUPS 4096(SI), Z5
	VMOVUPS 8192(SI), Z6
	VMOVUPS 12288(SI), Z7
	VSUBPS Z16, Z4, Z4
	VSUBPS Z16, Z5, Z5
	VSUBPS Z16, Z6, Z6
	VSUBPS Z16, Z7, Z7
	VFMADD231PS Z4, Z4, Z0
	VFMADD231PS Z5, Z5, Z1
	VFMADD231PS Z6, Z6, Z2
	VFMADD231PS Z7, Z7, Z3
	ADDQ $64, SI
	DECQ CX
	JNZ sq4_loop

	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	VZEROUPPER
	RET
