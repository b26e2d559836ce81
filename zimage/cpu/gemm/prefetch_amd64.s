//go:build amd64 && !purego

#include "textflag.h"

// func prefetchRows(p unsafe.Pointer, stride, rows, n int)
// Prefetches n bytes of each of rows rows (stride bytes apart) from p.
TEXT ·prefetchRows(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVQ stride+8(FP), DX
	MOVQ rows+16(FP), CX
	MOVQ n+24(FP), BX
	TESTQ CX, CX
	JZ done
row:
	XORQ AX, AX
line:
	PREFETCHT1 (SI)(AX*1)
	ADDQ $64, AX
	CMPQ AX, BX
	JLT line
	ADDQ DX, SI
	DECQ CX
	JNZ row
done:
	RET
