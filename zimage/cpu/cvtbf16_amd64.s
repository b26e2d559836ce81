//go:build amd64 && !purego

#include "textflag.h"

// func cvtBF16x64(dst *uint32, src *float32, n int)
// Rounds n float32 (a multiple of 64) to bfloat16 (nearest even; denormal
// inputs read as zero), stored in order: 32 bf16 pair words per 64 values.
// VCVTNE2PS2BF16 (AVX512-BF16) is emitted as bytes: Go 1.26's assembler
// lacks it (encoding checked with GNU as/objdump). Its low 16 results come
// from the second source operand, the high 16 from the first.
TEXT ·cvtBF16x64(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $6, CX
	JEQ done
loop:
	VMOVUPS 0(SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS 128(SI), Z3
	VMOVUPS 192(SI), Z4
	BYTE $0x62; BYTE $0xf2; BYTE $0x77; BYTE $0x48; BYTE $0x72; BYTE $0xd0 // VCVTNE2PS2BF16 Z0, Z1, Z2
	BYTE $0x62; BYTE $0xf2; BYTE $0x5f; BYTE $0x48; BYTE $0x72; BYTE $0xeb // VCVTNE2PS2BF16 Z3, Z4, Z5
	VMOVDQU32 Z2, 0(DI)
	VMOVDQU32 Z5, 64(DI)
	ADDQ $256, SI
	ADDQ $128, DI
	DECQ CX
	JNE loop
done:
	VZEROUPPER
	RET
