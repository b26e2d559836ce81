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

// Tables of pairsPanel6: pairLo/pairHi interleave the pair words of two rows
// (q 0-7 and 8-15) as dwords; mix2 (VPERMI2Q over rows 0-1 and 2-3) and mix3
// (VPERMQ over rows 4-5, masks 0x24, 0x49, 0x92) place those row-pair qwords
// at q*3+s in the three output registers of each half.
DATA pairLo<>+0(SB)/8, $0x0000001000000000
DATA pairLo<>+8(SB)/8, $0x0000001100000001
DATA pairLo<>+16(SB)/8, $0x0000001200000002
DATA pairLo<>+24(SB)/8, $0x0000001300000003
DATA pairLo<>+32(SB)/8, $0x0000001400000004
DATA pairLo<>+40(SB)/8, $0x0000001500000005
DATA pairLo<>+48(SB)/8, $0x0000001600000006
DATA pairLo<>+56(SB)/8, $0x0000001700000007
GLOBL pairLo<>(SB), RODATA|NOPTR, $64

DATA pairHi<>+0(SB)/8, $0x0000001800000008
DATA pairHi<>+8(SB)/8, $0x0000001900000009
DATA pairHi<>+16(SB)/8, $0x0000001a0000000a
DATA pairHi<>+24(SB)/8, $0x0000001b0000000b
DATA pairHi<>+32(SB)/8, $0x0000001c0000000c
DATA pairHi<>+40(SB)/8, $0x0000001d0000000d
DATA pairHi<>+48(SB)/8, $0x0000001e0000000e
DATA pairHi<>+56(SB)/8, $0x0000001f0000000f
GLOBL pairHi<>(SB), RODATA|NOPTR, $64

DATA mix2<>+0(SB)/8, $0x0000000000000000
DATA mix2<>+8(SB)/8, $0x0000000000000008
DATA mix2<>+16(SB)/8, $0x0000000000000000
DATA mix2<>+24(SB)/8, $0x0000000000000001
DATA mix2<>+32(SB)/8, $0x0000000000000009
DATA mix2<>+40(SB)/8, $0x0000000000000000
DATA mix2<>+48(SB)/8, $0x0000000000000002
DATA mix2<>+56(SB)/8, $0x000000000000000a
DATA mix2<>+64(SB)/8, $0x0000000000000000
DATA mix2<>+72(SB)/8, $0x0000000000000003
DATA mix2<>+80(SB)/8, $0x000000000000000b
DATA mix2<>+88(SB)/8, $0x0000000000000000
DATA mix2<>+96(SB)/8, $0x0000000000000004
DATA mix2<>+104(SB)/8, $0x000000000000000c
DATA mix2<>+112(SB)/8, $0x0000000000000000
DATA mix2<>+120(SB)/8, $0x0000000000000005
DATA mix2<>+128(SB)/8, $0x000000000000000d
DATA mix2<>+136(SB)/8, $0x0000000000000000
DATA mix2<>+144(SB)/8, $0x0000000000000006
DATA mix2<>+152(SB)/8, $0x000000000000000e
DATA mix2<>+160(SB)/8, $0x0000000000000000
DATA mix2<>+168(SB)/8, $0x0000000000000007
DATA mix2<>+176(SB)/8, $0x000000000000000f
DATA mix2<>+184(SB)/8, $0x0000000000000000
GLOBL mix2<>(SB), RODATA|NOPTR, $192

DATA mix3<>+0(SB)/8, $0x0000000000000000
DATA mix3<>+8(SB)/8, $0x0000000000000000
DATA mix3<>+16(SB)/8, $0x0000000000000000
DATA mix3<>+24(SB)/8, $0x0000000000000000
DATA mix3<>+32(SB)/8, $0x0000000000000000
DATA mix3<>+40(SB)/8, $0x0000000000000001
DATA mix3<>+48(SB)/8, $0x0000000000000000
DATA mix3<>+56(SB)/8, $0x0000000000000000
DATA mix3<>+64(SB)/8, $0x0000000000000002
DATA mix3<>+72(SB)/8, $0x0000000000000000
DATA mix3<>+80(SB)/8, $0x0000000000000000
DATA mix3<>+88(SB)/8, $0x0000000000000003
DATA mix3<>+96(SB)/8, $0x0000000000000000
DATA mix3<>+104(SB)/8, $0x0000000000000000
DATA mix3<>+112(SB)/8, $0x0000000000000004
DATA mix3<>+120(SB)/8, $0x0000000000000000
DATA mix3<>+128(SB)/8, $0x0000000000000000
DATA mix3<>+136(SB)/8, $0x0000000000000005
DATA mix3<>+144(SB)/8, $0x0000000000000000
DATA mix3<>+152(SB)/8, $0x0000000000000000
DATA mix3<>+160(SB)/8, $0x0000000000000006
DATA mix3<>+168(SB)/8, $0x0000000000000000
DATA mix3<>+176(SB)/8, $0x0000000000000000
DATA mix3<>+184(SB)/8, $0x0000000000000007
GLOBL mix3<>(SB), RODATA|NOPTR, $192
#define ROWPAIRS(p, r) \
	VMOVDQU32 (p), Z6; \
	VMOVDQU32 64(p), Z7; \
	ROUND(Z6, r); \
	ROUND(Z7, Z8); \
	VPERMT2W Z8, Z21, r; \
	ADDQ $128, p

#define MIX(pa, pb, pc, i2, i3, k, off) \
	VMOVDQA64 i2, Z6; \
	VPERMI2Q pb, pa, Z6; \
	VPERMQ pc, i3, k, Z6; \
	VMOVDQU64 Z6, off(DI)

// func pairsPanel6(dst *uint32, a *float32, lda, nblk int)
//
// pairsPanel6 packs 6 rows of A (row stride lda floats) over nblk blocks
// of 32 values into the 6-row pair panel: dst[q*6+r] = pair q of row r.
// Per block, each row's 16 pair words are interleaved into 96 words by
// dword and qword permutes.
TEXT ·pairsPanel6(SB), NOSPLIT, $0-32
	CONSTS
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R10
	MOVQ nblk+24(FP), CX
	TESTQ CX, CX
	JZ p6_done
	SHLQ $2, R10
	LEAQ (AX)(R10*1), BX
	LEAQ (BX)(R10*1), DX
	LEAQ (DX)(R10*1), SI
	LEAQ (SI)(R10*1), R8
	LEAQ (R8)(R10*1), R9
	VMOVDQU32 oddWords<>(SB), Z21
	VMOVDQU32 pairLo<>(SB), Z22
	VMOVDQU32 pairHi<>(SB), Z23
	VMOVDQU64 mix2<>+0(SB), Z24
	VMOVDQU64 mix2<>+64(SB), Z25
	VMOVDQU64 mix2<>+128(SB), Z26
	VMOVDQU64 mix3<>+0(SB), Z27
	VMOVDQU64 mix3<>+64(SB), Z28
	VMOVDQU64 mix3<>+128(SB), Z29
	MOVL $0x24, R11
	KMOVW R11, K3
	MOVL $0x49, R11
	KMOVW R11, K4
	MOVL $0x92, R11
	KMOVW R11, K5
p6_loop:
	ROWPAIRS(AX, Z0)
	ROWPAIRS(BX, Z1)
	ROWPAIRS(DX, Z2)
	ROWPAIRS(SI, Z3)
	ROWPAIRS(R8, Z4)
	ROWPAIRS(R9, Z5)
	VMOVDQA64 Z22, Z9
	VPERMI2D Z1, Z0, Z9
	VMOVDQA64 Z23, Z10
	VPERMI2D Z1, Z0, Z10
	VMOVDQA64 Z22, Z11
	VPERMI2D Z3, Z2, Z11
	VMOVDQA64 Z23, Z12
	VPERMI2D Z3, Z2, Z12
	VMOVDQA64 Z22, Z13
	VPERMI2D Z5, Z4, Z13
	VMOVDQA64 Z23, Z14
	VPERMI2D Z5, Z4, Z14
	MIX(Z9, Z11, Z13, Z24, Z27, K3, 0)
	MIX(Z9, Z11, Z13, Z25, Z28, K4, 64)
	MIX(Z9, Z11, Z13, Z26, Z29, K5, 128)
	MIX(Z10, Z12, Z14, Z24, Z27, K3, 192)
	MIX(Z10, Z12, Z14, Z25, Z28, K4, 256)
	MIX(Z10, Z12, Z14, Z26, Z29, K5, 320)
	ADDQ $384, DI
	DECQ CX
	JNZ p6_loop
p6_done:
	VZEROUPPER
	RET

// func cvtBF16Int(dst *uint16, src *float32, n int)
//
// cvtBF16Int rounds n float32 values to bf16, stored contiguously (a row
// of the bf16 copy of a convolution's image).
TEXT ·cvtBF16Int(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CONSTS
	VMOVDQU32 oddWords<>(SB), Z21
cv_loop:
	CMPQ CX, $32
	JLT cv_tail
	VMOVDQU32 (SI), Z0
	VMOVDQU32 64(SI), Z1
	ROUND(Z0, Z2)
	ROUND(Z1, Z3)
	VPERMT2W Z3, Z21, Z2
	VMOVDQU32 Z2, (DI)
	ADDQ $128, SI
	ADDQ $64, DI
	SUBQ $32, CX
	JMP cv_loop
cv_tail:
	TESTQ CX, CX
	JZ cv_done
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVD AX, K5
	KMOVW AX, K3
	SHRL $16, AX
	KMOVW AX, K4
	VMOVDQU32.Z (SI), K3, Z0
	VMOVDQU32.Z 64(SI), K4, Z1
	ROUND(Z0, Z2)
	ROUND(Z1, Z3)
	VPERMT2W Z3, Z21, Z2
	VMOVDQU16 Z2, K5, (DI)
cv_done:
	VZEROUPPER
	RET

// func pairTapsInt(dst *uint32, img *uint16, offs *int, nq, n, nr, base int)
//
// pairTapsInt writes the pair words of nq pairs of im2col rows of a padded
// bf16 image over n columns: dst[q*nr+j] = img[base+offs[2q]+j] |
// img[base+offs[2q+1]+j]<<16 (pure 16-bit moves, no rounding; a masked
// tail, so any n).
TEXT ·pairTapsInt(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ img+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ nq+24(FP), R9
	MOVQ n+32(FP), R10
	MOVQ nr+40(FP), R11
	MOVQ base+48(FP), R12
	SHLQ $2, R11
	LEAQ (SI)(R12*2), SI
	MOVQ R10, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	SHRQ $4, R10
	TESTQ R9, R9
	JZ pt_done
pt_q:
	MOVQ 0(R8), AX
	MOVQ 8(R8), BX
	LEAQ (SI)(AX*2), AX
	LEAQ (SI)(BX*2), BX
	MOVQ DI, DX
	MOVQ R10, CX
	TESTQ CX, CX
	JZ pt_tail
pt_j:
	VPMOVZXWD (AX), Z0
	VPMOVZXWD (BX), Z1
	VPSLLD $16, Z1, Z1
	VPORD Z1, Z0, Z0
	VMOVDQU32 Z0, (DX)
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $64, DX
	DECQ CX
	JNZ pt_j
pt_tail:
	KORTESTW K1, K1
	JZ pt_next
	VMOVDQU16.Z (AX), K1, Y0
	VMOVDQU16.Z (BX), K1, Y1
	VPMOVZXWD Y0, Z0
	VPMOVZXWD Y1, Z1
	VPSLLD $16, Z1, Z1
	VPORD Z1, Z0, Z0
	VMOVDQU32 Z0, K1, (DX)
pt_next:
	ADDQ $16, R8
	ADDQ R11, DI
	DECQ R9
	JNZ pt_q
pt_done:
	VZEROUPPER
	RET

// func addScalarInt(dst *float32, v float32, n int)
//
// addScalarInt adds v to dst[i] for i < n (a conv's bias on a tile row).
TEXT ·addScalarInt(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	VBROADCASTSS v+8(FP), Z0
	MOVQ n+16(FP), CX
as_loop:
	CMPQ CX, $16
	JLT as_tail
	VADDPS (DI), Z0, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, DI
	SUBQ $16, CX
	JMP as_loop
as_tail:
	TESTQ CX, CX
	JZ as_done
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	VMOVUPS.Z (DI), K1, Z1
	VADDPS Z1, Z0, Z1
	VMOVUPS Z1, K1, (DI)
as_done:
	VZEROUPPER
	RET
