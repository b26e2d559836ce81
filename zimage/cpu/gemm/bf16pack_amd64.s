//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 float32→bf16 pair packing for the bf16 GEMM (bf16pack_amd64.go).
// The rounding is integer arithmetic, exactly toBF16's: bits + 0x7fff +
// (bit 16), high half; NaN (|bits| > 0x7f800000) keeps its high half with
// the quiet bit set. VCVTNE2PS2BF16 would flush denormals to zero.

// iota16 is 0..15 (scatter indices); oddWords picks the high 16-bit word
// of each of 32 dwords from two registers (VPERMT2W).
DATA iota16<>+0(SB)/8, $0x0000000100000000
DATA iota16<>+8(SB)/8, $0x0000000300000002
DATA iota16<>+16(SB)/8, $0x0000000500000004
DATA iota16<>+24(SB)/8, $0x0000000700000006
DATA iota16<>+32(SB)/8, $0x0000000900000008
DATA iota16<>+40(SB)/8, $0x0000000b0000000a
DATA iota16<>+48(SB)/8, $0x0000000d0000000c
DATA iota16<>+56(SB)/8, $0x0000000f0000000e
GLOBL iota16<>(SB), RODATA|NOPTR, $64

DATA oddWords<>+0(SB)/8, $0x0007000500030001
DATA oddWords<>+8(SB)/8, $0x000f000d000b0009
DATA oddWords<>+16(SB)/8, $0x0017001500130011
DATA oddWords<>+24(SB)/8, $0x001f001d001b0019
DATA oddWords<>+32(SB)/8, $0x0027002500230021
DATA oddWords<>+40(SB)/8, $0x002f002d002b0029
DATA oddWords<>+48(SB)/8, $0x0037003500330031
DATA oddWords<>+56(SB)/8, $0x003f003d003b0039
GLOBL oddWords<>(SB), RODATA|NOPTR, $64

// CONSTS loads the rounding constants into Z16-Z20 (clobbers AX).
#define CONSTS \
	MOVL $0x7fffffff, AX; \
	VPBROADCASTD AX, Z16; \
	MOVL $0x7f800000, AX; \
	VPBROADCASTD AX, Z17; \
	MOVL $1, AX; \
	VPBROADCASTD AX, Z18; \
	MOVL $0x7fff, AX; \
	VPBROADCASTD AX, Z19; \
	MOVL $0x00400000, AX; \
	VPBROADCASTD AX, Z20

// ROUND sets the high 16 bits of each dword of t to bf16(x) (the low bits
// are garbage); clobbers K2.
#define ROUND(x, t) \
	VPANDD Z16, x, t; \
	VPCMPGTD Z17, t, K2; \
	VPSRLD $16, x, t; \
	VPANDD Z18, t, t; \
	VPADDD x, t, t; \
	VPADDD Z19, t, t; \
	VPORD Z20, x, K2, t

// func pairsStride(dst *uint32, src *float32, kb, stride int)
TEXT ·pairsStride(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kb+16(FP), CX
	MOVQ stride+24(FP), DX
	CONSTS
	VMOVDQU32 oddWords<>(SB), Z21
	VPBROADCASTD DX, Z22
	VPMULLD iota16<>(SB), Z22, Z22
	SHLQ $6, DX // bytes per 16 words
ps_loop:
	CMPQ CX, $32
	JLT ps_tail
	VMOVDQU32 (SI), Z0
	VMOVDQU32 64(SI), Z1
	ROUND(Z0, Z2)
	ROUND(Z1, Z3)
	VPERMT2W Z3, Z21, Z2
	KXNORW K1, K1, K1
	VPSCATTERDD Z2, K1, (DI)(Z22*4)
	ADDQ $128, SI
	ADDQ DX, DI
	SUBQ $32, CX
	JMP ps_loop
ps_tail:
	TESTQ CX, CX
	JZ ps_done
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K3
	SHRL $16, AX
	KMOVW AX, K4
	VMOVDQU32.Z (SI), K3, Z0
	VMOVDQU32.Z 64(SI), K4, Z1
	ROUND(Z0, Z2)
	ROUND(Z1, Z3)
	VPERMT2W Z3, Z21, Z2
	INCQ CX
	SHRQ $1, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	VPSCATTERDD Z2, K1, (DI)(Z22*4)
ps_done:
	VZEROUPPER
	RET

// func pairRowsInt(dst *uint32, r0, r1 *float32, n int)
TEXT ·pairRowsInt(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ r0+8(FP), SI
	MOVQ r1+16(FP), DX
	MOVQ n+24(FP), CX
	CONSTS
	MOVL $0xffff0000, AX
	VPBROADCASTD AX, Z21
pr_loop:
	CMPQ CX, $16
	JLT pr_tail
	VMOVDQU32 (SI), Z0
	VMOVDQU32 (DX), Z1
	ROUND(Z0, Z2)
	ROUND(Z1, Z3)
	VPSRLD $16, Z2, Z2
	VPTERNLOGD $0xf8, Z21, Z3, Z2 // Z2 | (Z3 & Z21)
	VMOVDQU32 Z2, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP pr_loop
pr_tail:
	TESTQ CX, CX
	JZ pr_done
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K3
	VMOVDQU32.Z (SI), K3, Z0
	VMOVDQU32.Z (DX), K3, Z1
	ROUND(Z0, Z2)
	ROUND(Z1, Z3)
	VPSRLD $16, Z2, Z2
	VPTERNLOGD $0xf8, Z21, Z3, Z2
	VMOVDQU32 Z2, K3, (DI)
pr_done:
	VZEROUPPER
	RET
