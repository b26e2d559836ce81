//go:build ignore

// gen_quant writes quant_panel_amd64.s and quant_panel_decl_amd64.go, the
// AVX-512 (F, BW, VL, VBMI) kernels of the quantized GEMM for each ggml
// block type. Run with `go generate` in this directory.
//
//   - qsc<type>: the scale tables of blocks of 16 rows: per block and scale
//     group a vector of the 16 rows' scales (and mins), decoded from
//     gathered bytes with the reference's float32 operations.
//   - qtr<type>: the packed B panel of the blocked GEMM straight from the
//     blocks, 16 rows × 16 values per tile: the 16-byte groups of 4 rows per
//     zmm unpacked as bytes (brow), a 16×16 byte transpose (VPERMI2B) to
//     dwords, lane r = row r, then converted and scaled by the group's
//     vector of scales (shared qtail* subroutines).
//   - qdot<R>x<M>x<type>: R rows of B dotted with M rows of A straight from
//     the blocks for the GEMV path, with dot4avx512F32's accumulators and
//     reduction.
//
// Every value is the reference dequantizer's (weights.DequantBlock): exact
// integer unpacking and int→float conversion, then the same single-rounded
// mul (and add/sub) with the same float32 scales, so the products are the
// float32 GEMM's on the dequantized matrix bit for bit.
package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"sort"
)

// op is how a scaled value is formed from q (an exact float) and the
// group's tables: y = q·d, y = d·q − m, y = d·q + m.
type op int

const (
	opMul op = iota
	opMulSub
	opMulAdd
)

// Constant registers (broadcast at the start of each tile: the transpose
// uses Z16..Z31 as scratch).
const (
	kMask15 = 31 // 0x0f
	kEight  = 30 // 8
	kSixtn  = 29 // 16
	kThree  = 28 // 3
	kFour   = 27 // 4
	kBit    = 26 // 1 << bit (per chunk)
	kMask30 = 25 // 0x30
	kThirty = 24 // 32
)

// constant table offsets (bytes) in qconst<>
var constOff = map[int]int{kMask15: 0, kEight: 4, kSixtn: 8, kThree: 12, kFour: 16, kMask30: 20, kThirty: 24}

const bitsOff = 28 // 1<<i at bitsOff + 4i, i < 8

const off63 = 60 // 63

// Byte-replicated constants (offsets in qconst<>).
const (
	offB0F = 64 // 0x0f0f0f0f
	offB30 = 68 // 0x30303030
	offB20 = 72 // 0x20202020
	offB10 = 76 // 0x10101010
	offB03 = 80 // 0x03030303
	offB04 = 84 // 0x04040404
	offB08 = 88 // 0x08080808
)

// byte-level helpers (zmm registers of 4 rows × 16 bytes)

// bhigh5 adds 16 to the bytes of zr whose bit in the 4 rows' 16-bit
// fields at disp is set (the fifth bit of Q5_0/Q5_1), through a 64-bit
// mask built in R12.
func bhigh5(p func(string, ...any), row func(int, int) string, disp int, zr string) {
	p("MOVWQZX %s, R12", row(0, disp))
	for l := 1; l < 4; l++ {
		p("MOVWQZX %s, R13", row(l, disp))
		p("SHLQ $%d, R13", 16*l)
		p("ORQ R13, R12")
	}
	p("KMOVQ R12, K3")
	p("VPADDB %s, %s, K3, %s", z(kSixtn), zr, zr)
}

func bnibble(p func(string, ...any), high bool, zr string) {
	if high {
		p("VPSRLW $4, %s, %s", zr, zr)
	}
	p("VPANDD %s, %s, %s", z(kMask15), zr, zr) // bytes 0x0f
}

// bshift shifts the bytes of zr left (sh > 0) or right by |sh| (bits
// crossing into a neighbour byte are masked off by the caller).
func bshift(p func(string, ...any), sh int, zr string) {
	switch {
	case sh > 0:
		p("VPSLLW $%d, %s, %s", sh, zr, zr)
	case sh < 0:
		p("VPSRLW $%d, %s, %s", -sh, zr, zr)
	}
}

var (
	bc0F = [2]int{kMask15, offB0F}
	bc30 = [2]int{kMask30, offB30}
	bc20 = [2]int{kThirty, offB20}
	bc10 = [2]int{kSixtn, offB10}
	bc03 = [2]int{kThree, offB03}
	bc04 = [2]int{kFour, offB04}
	bc08 = [2]int{kEight, offB08}
)

// rotVecs are the VPROLVD count vectors (8 dwords lo, then 8 hi) in
// qrot<>, emitted after the kernels.
var rotVecs [][2]int

func rot(lo, hi int) string {
	lo, hi = (lo+32)%32, (hi+32)%32
	for i, v := range rotVecs {
		if v == [2]int{lo, hi} {
			return fmt.Sprintf("qrot<>+%d(SB)", 64*i)
		}
	}
	rotVecs = append(rotVecs, [2]int{lo, hi})
	return fmt.Sprintf("qrot<>+%d(SB)", 64*(len(rotVecs)-1))
}

// loadDup loads 32 bytes at addr into both halves of zr.
func loadDup(p func(string, ...any), addr, zr string) {
	p("VMOVDQU32 %s, %s", addr, "Y"+zr[1:])
	p("VINSERTI64X4 $1, %s, %s, %s", addr, zr, zr)
}

// prepK45 writes the nibbles of a Q4_K/Q5_K block (qs at byte qs) as
// R0..R3 = low, high nibbles of bytes 0..63, low, high of 64..127, adding
// qh bit g as 16 where qh ≥ 0 (bytes 0..31 duplicated, rotated per half).
func prepK45(p func(string, ...any), addr func(int) string, dst func(int) string, qs, qh int) {
	if qh >= 0 {
		loadDup(p, addr(qh), "Z20")
	}
	// bits of R0..R3's two halves: groups (0,2), (1,3), (4,6), (5,7)
	bits := [4][2]int{{0, 2}, {1, 3}, {4, 6}, {5, 7}}
	for h := range 2 {
		p("VMOVDQU64 %s, Z16", addr(qs+64*h))
		for n := range 2 {
			i := 2*h + n
			if n == 0 {
				p("VPANDD Z31, Z16, Z17")
			} else {
				p("VPSRLW $4, Z16, Z17")
				p("VPANDD Z31, Z17, Z17")
			}
			if qh >= 0 {
				p("VPROLVD %s, Z20, Z18", rot(4-bits[i][0], 4-bits[i][1]))
				p("VPTERNLOGD $0xF8, Z29, Z18, Z17") // | qh bit & 0x10
			}
			p("VMOVDQU64 Z17, %s", dst(64*i))
		}
	}
}

func poffK45(c int) int {
	g := c / 2
	return 64*(2*(g/4)+g%2) + 32*(g/2%2) + 16*(c%2)
}

func cOff(t qtype, k int) int {
	if o, ok := t.coff[k]; ok {
		return o
	}
	return constOff[k]
}

func x(zr string) string { return "X" + zr[1:] }

// Scale table helpers: registers Z17..Z23 hold gathered words, Z24..Z31
// constants, Z0..Z15 are temporaries.

func y(zr string) string { return "Y" + zr[1:] }

// gather loads the dword at byte disp of each row's block into dst.
func gather(p func(string, ...any), disp int, dst string) {
	p("KXNORW K1, K1, K1")
	p("VPGATHERDD %d(SI)(Z16*1), K1, %s", disp, dst)
}

// f16lo converts the low (hi: high) halves of the dwords in src to float32.
func f16lo(p func(string, ...any), src, dst string) {
	p("VPMOVDW %s, %s", src, y(dst))
	p("VCVTPH2PS %s, %s", y(dst), dst)
}

func f16hi(p func(string, ...any), src, dst string) {
	p("VPSRLD $16, %s, %s", src, dst)
	f16lo(p, dst, dst)
}

// field sets dst = (src >> sh) & mask (sh < 0: shift left).
func field(p func(string, ...any), src string, sh int, mask, dst string) {
	switch {
	case sh > 0:
		p("VPSRLD $%d, %s, %s", sh, src, dst)
		src = dst
	case sh < 0:
		p("VPSLLD $%d, %s, %s", -sh, src, dst)
		src = dst
	}
	p("VPANDD %s, %s, %s", mask, src, dst)
}

// scaleOut converts the integers in zr, multiplies by d and stores the
// table entry at off.
func scaleOut(p func(string, ...any), zr, d string, off int) {
	p("VCVTDQ2PS %s, %s", zr, zr)
	p("VMULPS %s, %s, %s", d, zr, zr)
	p("VMOVUPS %s, %d(R10)", zr, off)
}

func bcast(p func(string, ...any), off, reg int) {
	p("VPBROADCASTD qconst<>+%d(SB), %s", off, z(reg))
}

// scalesD: one f16 d per block at byte 0 (Q8_0, Q4_0, Q5_0).
func scalesD(p func(string, ...any)) {
	gather(p, 0, "Z17")
	f16lo(p, "Z17", "Z18")
	p("VMOVUPS Z18, (R10)")
}

// scalesDM: d and m f16 at bytes 0 and 2 (Q4_1, Q5_1).
func scalesDM(p func(string, ...any)) {
	gather(p, 0, "Z17")
	f16lo(p, "Z17", "Z18")
	p("VMOVUPS Z18, (R10)")
	f16hi(p, "Z17", "Z19")
	p("VMOVUPS Z19, 64(R10)")
}

// scalesK45: d, dmin and the 12 bytes of 6-bit scales and mins (Q4_K, Q5_K;
// see weights' kScaleMin).
func scalesK45(p func(string, ...any)) {
	gather(p, 0, "Z17")
	f16lo(p, "Z17", "Z18") // d
	f16hi(p, "Z17", "Z19") // dmin
	gather(p, 4, "Z20")    // s[0..3]
	gather(p, 8, "Z21")    // s[4..7]
	gather(p, 12, "Z22")   // s[8..11]
	bcast(p, off63, 23)
	bcast(p, constOff[kMask15], kMask15)
	bcast(p, constOff[kMask30], kMask30)
	for j := range 4 {
		field(p, "Z20", 8*j, "Z23", "Z0")
		scaleOut(p, "Z0", "Z18", j*64)
		field(p, "Z21", 8*j, "Z23", "Z1")
		scaleOut(p, "Z1", "Z19", 512+j*64)
		field(p, "Z22", 8*j, z(kMask15), "Z2")
		field(p, "Z20", 8*j+2, z(kMask30), "Z3")
		p("VPORD Z3, Z2, Z2")
		scaleOut(p, "Z2", "Z18", (j+4)*64)
		field(p, "Z22", 8*j+4, z(kMask15), "Z4")
		field(p, "Z21", 8*j+2, z(kMask30), "Z5")
		p("VPORD Z5, Z4, Z4")
		scaleOut(p, "Z4", "Z19", 512+(j+4)*64)
	}
}

type qtype struct {
	name   string
	bb     int // block bytes
	cpb    int // 16-value chunks per block
	tables int // 1: d, 2: d and m
	groups int // scale groups per block
	op     op
	group  func(c int) int
	// consts lists the constant registers the chunk uses (bit: kBit with
	// the bit index from bit(c)).
	consts func(c int) []int
	bit    func(c int) int
	// brow, where set, emits the unpacking of chunk c of 4 rows at once on
	// their 16-byte groups (load fills a zmm, lane L = row L) into bytes of
	// zr and reports whether they are signed; bconsts are the constant
	// registers and qconst<> offsets it uses. The panel kernel then
	// transposes bytes (see emitTileB).
	brow    func(p func(string, ...any), c int, load func(disp int, dst string), row func(l, disp int) string, zr, zt string) bool
	bconsts func(c int) [][2]int
	// bsub, where not 0, is subtracted from the (unsigned) values brow
	// produced once they are dwords (cheaper than signed bytes there).
	bsub int
	// prep, where set, writes the values of one row's block as bytes in
	// value chunk order (chunk c at poff(c); psigned: int8) for the dot
	// kernels, which then only widen them; pconsts are the constants it
	// uses.
	prep    func(p func(string, ...any), addr func(disp int) string, dst func(off int) string)
	poff    func(c int) int
	psigned bool
	pconsts [][2]int
	// lutBits (4 or 5), where set, makes the single-row-of-A dot kernel
	// look the values up instead of converting and scaling each: per row
	// and scale group a table of the 2^lutBits values y(j) (same float32
	// operations as the reference, on the exact j + lutLo), indexed by the
	// raw codes lrow (default row) unpacks (VPERMPS / VPERMI2PS). Measured:
	// a gain for Q4_0, Q5_0, Q4_K and Q4_1 (m in a register: Z12+r, which
	// the 5-bit tables use, so not Q5_1); none or a loss for Q5_K.
	lutBits int
	lutLo   int
	lrow    func(p func(string, ...any), c int, addr func(int) string, zr, zt string)
	// coff overrides constOff for this type (byte-replicated constants of
	// the byte-level unpacking).
	coff map[int]int
	// row emits the integer unpacking of chunk c of one row into zr
	// (addr(disp) gives the address of byte disp of the row's block).
	row func(p func(string, ...any), c int, addr func(int) string, zr, zt string)
	// scales emits the computation of the block's scale table (at R10)
	// from the 16 rows' blocks at SI (row offsets in Z16).
	scales func(p func(string, ...any))
}

func z(i int) string { return fmt.Sprintf("Z%d", i) }

func nibble(p func(string, ...any), high bool, zr string) {
	if high {
		p("VPSRLD $4, %s, %s", zr, zr)
	} else {
		p("VPANDD %s, %s, %s", z(kMask15), zr, zr)
	}
}

var types = []qtype{
	{name: "Q8_0", bb: 34, cpb: 2, tables: 1, groups: 1, op: opMul, scales: scalesD,
		bconsts: func(int) [][2]int { return nil },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			load(2+16*c, zr)
			return true
		},
		group: func(int) int { return 0 }, consts: func(int) []int { return nil },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVSXBD %s, %s", addr(2+16*c), zr)
		}},
	{name: "Q4_0", bb: 18, cpb: 2, tables: 1, groups: 1, op: opMul, scales: scalesD,
		lutBits: 4, lutLo: -8,
		lrow: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVZXBD %s, %s", addr(2), zr)
			nibble(p, c == 1, zr)
		},
		bconsts: func(int) [][2]int { return [][2]int{bc0F, bc08} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			load(2, zr)
			bnibble(p, c == 1, zr)
			p("VPSUBB %s, %s, %s", z(kEight), zr, zr)
			return true
		},
		group: func(int) int { return 0 }, consts: func(int) []int { return []int{kMask15, kEight} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVZXBD %s, %s", addr(2), zr)
			nibble(p, c == 1, zr)
			p("VPSUBD %s, %s, %s", z(kEight), zr, zr)
		}},
	{name: "Q4_1", bb: 20, cpb: 2, tables: 2, groups: 1, op: opMulAdd, scales: scalesDM,
		lutBits: 4,
		bconsts: func(int) [][2]int { return [][2]int{bc0F} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			load(4, zr)
			bnibble(p, c == 1, zr)
			return false
		},
		group: func(int) int { return 0 }, consts: func(int) []int { return []int{kMask15} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVZXBD %s, %s", addr(4), zr)
			nibble(p, c == 1, zr)
		}},
	{name: "Q5_0", bb: 22, cpb: 2, tables: 1, groups: 1, op: opMul, scales: scalesD,
		lutBits: 5, lutLo: -16,
		lrow: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVZXBD %s, %s", addr(6), zr)
			nibble(p, c == 1, zr)
			p("KMOVW %s, K1", addr(2+2*c))
			p("VPADDD %s, %s, K1, %s", z(kSixtn), zr, zr)
		},
		bconsts: func(int) [][2]int { return [][2]int{bc0F, bc10} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			load(6, zr)
			bnibble(p, c == 1, zr)
			bhigh5(p, row, 2+2*c, zr)
			p("VPSUBB %s, %s, %s", z(kSixtn), zr, zr)
			return true
		},
		group: func(int) int { return 0 }, consts: func(int) []int { return []int{kMask15, kSixtn} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVZXBD %s, %s", addr(6), zr)
			nibble(p, c == 1, zr)
			p("KMOVW %s, K1", addr(2+2*c))
			p("VPADDD %s, %s, K1, %s", z(kSixtn), zr, zr)
			p("VPSUBD %s, %s, %s", z(kSixtn), zr, zr)
		}},
	{name: "Q5_1", bb: 24, cpb: 2, tables: 2, groups: 1, op: opMulAdd, scales: scalesDM,
		bconsts: func(int) [][2]int { return [][2]int{bc0F, bc10} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			load(8, zr)
			bnibble(p, c == 1, zr)
			bhigh5(p, row, 4+2*c, zr)
			return false
		},
		group: func(int) int { return 0 }, consts: func(int) []int { return []int{kMask15, kSixtn} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			p("VPMOVZXBD %s, %s", addr(8), zr)
			nibble(p, c == 1, zr)
			p("KMOVW %s, K1", addr(4+2*c))
			p("VPADDD %s, %s, K1, %s", z(kSixtn), zr, zr)
		}},
	// Q2_K: element i = h·128 + s·32 + l: bits 2s of byte 16 + h·32 + l.
	{name: "Q2_K", bb: 84, cpb: 16, tables: 2, groups: 16, op: opMulSub,
		bconsts: func(int) [][2]int { return [][2]int{bc03} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			h, s, l0 := c/8, c/2%4, 16*(c%2)
			load(16+32*h+l0, zr)
			bshift(p, -2*s, zr)
			p("VPANDD %s, %s, %s", z(kThree), zr, zr)
			return false
		},
		scales: func(p func(string, ...any)) {
			// d, dmin at 80; scale bytes 0..15: low nibble scale, high min.
			gather(p, 80, "Z17")
			f16lo(p, "Z17", "Z18")
			f16hi(p, "Z17", "Z19")
			for i := range 4 {
				gather(p, 4*i, z(20+i))
			}
			bcast(p, constOff[kMask15], kMask15)
			for g := range 16 {
				x := z(20 + g/4)
				field(p, x, 8*(g%4), z(kMask15), "Z0")
				scaleOut(p, "Z0", "Z18", g*64)
				field(p, x, 8*(g%4)+4, z(kMask15), "Z1")
				scaleOut(p, "Z1", "Z19", 1024+g*64)
			}
		},
		group: func(c int) int { return c }, consts: func(int) []int { return []int{kThree} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			h, s, l0 := c/8, c/2%4, 16*(c%2)
			p("VPMOVZXBD %s, %s", addr(16+32*h+l0), zr)
			if s > 0 {
				p("VPSRLD $%d, %s, %s", 2*s, zr, zr)
			}
			p("VPANDD %s, %s, %s", z(kThree), zr, zr)
		}},
	// Q3_K: as Q2_K from byte 32; a clear bit i/32 of hmask[i%32] subtracts 4.
	{name: "Q3_K", bb: 110, cpb: 16, tables: 1, groups: 16, op: opMul,
		pconsts: [][2]int{bc03, bc04}, psigned: true,
		poff: func(c int) int { return 64*(c/2%4) + 32*(c/8) + 16*(c%2) },
		prep: func(p func(string, ...any), addr func(int) string, dst func(int) string) {
			// R_s (s = 0..3) = 2-bit values s of qs bytes 0..63, minus 4
			// where hmask bit 4h + s is clear (h: byte half).
			p("VMOVDQU64 %s, Z16", addr(32))
			loadDup(p, addr(0), "Z20")
			for s := range 4 {
				if s == 0 {
					p("VPANDD Z28, Z16, Z17")
				} else {
					p("VPSRLW $%d, Z16, Z17", 2*s)
					p("VPANDD Z28, Z17, Z17")
				}
				p("VPROLVD %s, Z20, Z18", rot(2-s, 2-4-s))
				p("VPTERNLOGD $0xF8, Z27, Z18, Z17") // | hbit & 4
				p("VPSUBB Z27, Z17, Z17")
				p("VMOVDQU64 Z17, %s", dst(64*s))
			}
		},
		bconsts: func(int) [][2]int { return [][2]int{bc03, bc04} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			h, s, l0 := c/8, c/2%4, 16*(c%2)
			load(32+32*h+l0, zr)
			bshift(p, -2*s, zr)
			load(l0, zt)
			bshift(p, 2-c/2, zt) // bit c/2 to bit 2
			p("VPANDD %s, %s, %s", z(kFour), zt, zt)
			p("VPTERNLOGD $0xEC, %s, %s, %s", z(kThree), zt, zr) // zr&3 | zt
			p("VPSUBB %s, %s, %s", z(kFour), zr, zr)
			return true
		},
		scales: func(p func(string, ...any)) {
			// d: high half of the dword at 106 (the block ends at 110);
			// scale g = (lo | hi<<4) - 32 from bytes 96..107.
			gather(p, 106, "Z17")
			f16hi(p, "Z17", "Z18")
			gather(p, 96, "Z20")
			gather(p, 100, "Z21")
			gather(p, 104, "Z22")
			bcast(p, constOff[kMask15], kMask15)
			bcast(p, constOff[kMask30], kMask30)
			bcast(p, constOff[kThirty], kThirty)
			for g := range 16 {
				field(p, z(20+g%8/4), 8*(g%4)+4*(g/8), z(kMask15), "Z0")
				field(p, "Z22", 8*(g%4)+2*(g/4)-4, z(kMask30), "Z1")
				p("VPORD Z1, Z0, Z0")
				p("VPSUBD %s, Z0, Z0", z(kThirty))
				scaleOut(p, "Z0", "Z18", g*64)
			}
		},
		group: func(c int) int { return c }, consts: func(int) []int { return []int{kThree, kFour, kBit} },
		bit: func(c int) int { return c / 2 },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			h, s, l0 := c/8, c/2%4, 16*(c%2)
			p("VPMOVZXBD %s, %s", addr(32+32*h+l0), zr)
			if s > 0 {
				p("VPSRLD $%d, %s, %s", 2*s, zr, zr)
			}
			p("VPANDD %s, %s, %s", z(kThree), zr, zr)
			p("VPMOVZXBD %s, %s", addr(l0), zt)
			p("VPTESTNMD %s, %s, K1", z(kBit), zt)
			p("VPSUBD %s, %s, K1, %s", z(kFour), zr, zr)
		}},
	// Q4_K: group g = c/2 takes the low (g even) or high nibbles of bytes
	// 16 + (g/2)·32 ...
	{name: "Q4_K", bb: 144, cpb: 16, tables: 2, groups: 8, op: opMulSub, scales: scalesK45,
		lutBits: 4,
		pconsts: [][2]int{bc0F}, poff: poffK45,
		prep: func(p func(string, ...any), addr func(int) string, dst func(int) string) {
			prepK45(p, addr, dst, 16, -1)
		},
		bconsts: func(int) [][2]int { return [][2]int{bc0F} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			g := c / 2
			load(16+32*(g/2)+16*(c%2), zr)
			bnibble(p, g%2 == 1, zr)
			return false
		},
		group: func(c int) int { return c / 2 }, consts: func(int) []int { return []int{kMask15} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			g := c / 2
			p("VPMOVZXBD %s, %s", addr(16+32*(g/2)+16*(c%2)), zr)
			nibble(p, g%2 == 1, zr)
		}},
	// Q5_K: as Q4_K from byte 48, plus bit g of qh byte 16 + l as 16.
	{name: "Q5_K", bb: 176, cpb: 16, tables: 2, groups: 8, op: opMulSub, scales: scalesK45,
		pconsts: [][2]int{bc0F, bc10}, poff: poffK45,
		prep: func(p func(string, ...any), addr func(int) string, dst func(int) string) {
			prepK45(p, addr, dst, 48, 16)
		},
		bconsts: func(int) [][2]int { return [][2]int{bc0F, bc10} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			g := c / 2
			load(48+32*(g/2)+16*(c%2), zr)
			bnibble(p, g%2 == 1, zr)
			load(16+16*(c%2), zt)
			bshift(p, 4-g, zt)                                   // bit g to bit 4
			p("VPTERNLOGD $0xF8, %s, %s, %s", z(kSixtn), zt, zr) // zr | zt&0x10
			return false
		},
		group: func(c int) int { return c / 2 }, consts: func(int) []int { return []int{kMask15, kSixtn, kBit} },
		bit: func(c int) int { return c / 2 },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			g := c / 2
			p("VPMOVZXBD %s, %s", addr(48+32*(g/2)+16*(c%2)), zr)
			nibble(p, g%2 == 1, zr)
			p("VPMOVZXBD %s, %s", addr(16+16*(c%2)), zt)
			p("VPTESTMD %s, %s, K1", z(kBit), zt)
			p("VPADDD %s, %s, K1, %s", z(kSixtn), zr, zr)
		}},
	// Q6_K: in half h, quarter q of 32 elements: low (q < 2) or high nibbles
	// of ql byte h·64 + (q%2)·32 + l, bits 2q of qh byte 128 + h·32 + l as
	// bits 4-5; offset -32. Combined on the 16 bytes, then widened.
	{name: "Q6_K", bb: 210, cpb: 16, tables: 1, groups: 16, op: opMul,
		pconsts: [][2]int{bc0F, bc30, bc20}, psigned: true,
		poff: func(c int) int { return 16 * c },
		prep: func(p func(string, ...any), addr func(int) string, dst func(int) string) {
			// Per half: values 0..63 = low nibbles of ql 0..63 with qh bits
			// 0-1 (bytes 0..31) and 2-3 (32..63); 64..127 = high nibbles
			// with bits 4-5 and 6-7; offset -32.
			for h := range 2 {
				p("VMOVDQU64 %s, Z16", addr(64*h))
				loadDup(p, addr(128+32*h), "Z20")
				p("VPANDD Z31, Z16, Z17")
				p("VPROLVD %s, Z20, Z18", rot(4, 2))
				p("VPTERNLOGD $0xF8, Z25, Z18, Z17")
				p("VPSUBB Z24, Z17, Z17")
				p("VMOVDQU64 Z17, %s", dst(128*h))
				p("VPSRLW $4, Z16, Z17")
				p("VPANDD Z31, Z17, Z17")
				p("VPROLVD %s, Z20, Z18", rot(0, -2))
				p("VPTERNLOGD $0xF8, Z25, Z18, Z17")
				p("VPSUBB Z24, Z17, Z17")
				p("VMOVDQU64 Z17, %s", dst(128*h+64))
			}
		},
		bconsts: func(int) [][2]int { return [][2]int{bc0F, bc30, bc20} },
		brow: func(p func(string, ...any), c int, load func(int, string), row func(int, int) string, zr, zt string) bool {
			h, q, l0 := c/8, c%8/2, 16*(c%2)
			load(64*h+32*(q%2)+l0, zr)
			bnibble(p, q >= 2, zr)
			load(128+32*h+l0, zt)
			bshift(p, 4-2*q, zt)
			p("VPTERNLOGD $0xF8, %s, %s, %s", z(kMask30), zt, zr) // zr | zt&0x30
			return false                                          // - 32: bsub
		},
		bsub: 32,
		scales: func(p func(string, ...any)) {
			// d: high half of the dword at 206 (the block ends at 210);
			// 16 signed scale bytes at 192.
			gather(p, 206, "Z17")
			f16hi(p, "Z17", "Z18")
			for i := range 4 {
				gather(p, 192+4*i, z(20+i))
			}
			for g := range 16 {
				xg := z(20 + g/4)
				if sh := 24 - 8*(g%4); sh > 0 {
					p("VPSLLD $%d, %s, Z0", sh, xg)
					xg = "Z0"
				}
				p("VPSRAD $24, %s, Z0", xg)
				scaleOut(p, "Z0", "Z18", g*64)
			}
		},
		coff:  map[int]int{kMask15: offB0F, kMask30: offB30, kThirty: offB20},
		group: func(c int) int { return c }, consts: func(int) []int { return []int{kMask15, kMask30, kThirty} },
		row: func(p func(string, ...any), c int, addr func(int) string, zr, zt string) {
			h, q, l0 := c/8, c%8/2, 16*(c%2)
			xr, xt := x(zr), x(zt)
			p("VMOVDQU32 %s, %s", addr(64*h+32*(q%2)+l0), xr)
			if q >= 2 {
				p("VPSRLW $4, %s, %s", xr, xr)
			}
			p("VPANDD %s, %s, %s", x(z(kMask15)), xr, xr)
			p("VMOVDQU32 %s, %s", addr(128+32*h+l0), xt)
			switch sh := 4 - 2*q; {
			case sh > 0:
				p("VPSLLW $%d, %s, %s", sh, xt, xt)
			case sh < 0:
				p("VPSRLW $%d, %s, %s", -sh, xt, xt)
			}
			// xr |= xt & 0x30, then -32, then widened
			p("VPTERNLOGD $0xF8, %s, %s, %s", x(z(kMask30)), xt, xr)
			p("VPSUBB %s, %s, %s", x(z(kThirty)), xr, xr)
			p("VPMOVSXBD %s, %s", xr, zr)
		}},
}

func main() {
	var s, d bytes.Buffer
	fmt.Fprintf(&s, "// Code generated by gen_quant.go; DO NOT EDIT.\n\n//go:build amd64 && !purego\n\n#include \"textflag.h\"\n\n")
	// Constants.
	vals := []uint32{0x0f, 8, 16, 3, 4, 0x30, 32}
	for i := range 8 {
		vals = append(vals, 1<<i)
	}
	vals = append(vals, 63, 0x0f0f0f0f, 0x30303030, 0x20202020, 0x10101010, 0x03030303, 0x04040404, 0x08080808)
	for i, v := range vals {
		fmt.Fprintf(&s, "DATA qconst<>+%d(SB)/4, $%#x\n", 4*i, v)
	}
	fmt.Fprintf(&s, "GLOBL qconst<>(SB), RODATA|NOPTR, $%d\n", 4*len(vals))
	// VPERMI2B index tables of the 16×16 byte transpose (emitTileB).
	var perm [4][64]byte
	for p := range 8 {
		for r := range 8 {
			perm[0][8*p+r] = byte(16*r + p)     // values 0..7 of rows 0..7
			perm[1][8*p+r] = byte(16*r + p + 8) // values 8..15
		}
	}
	for q := range 4 {
		for r := range 16 {
			lo, hi := 8*q+r, 64+8*q+r-8
			if r < 8 {
				perm[2][16*q+r] = byte(lo)
				perm[3][16*q+r] = byte(lo + 32)
			} else {
				perm[2][16*q+r] = byte(hi)
				perm[3][16*q+r] = byte(hi + 32)
			}
		}
	}
	for i, t := range perm {
		for j := 0; j < 64; j += 8 {
			var v uint64
			for b := range 8 {
				v |= uint64(t[j+b]) << (8 * b)
			}
			fmt.Fprintf(&s, "DATA qperm<>+%d(SB)/8, $%#x\n", 64*i+j, v)
		}
	}
	fmt.Fprintf(&s, "GLOBL qperm<>(SB), RODATA|NOPTR, $256\n")
	// Round 2 of emitTileB, unsigned: value p's bytes of 16 rows to byte 0
	// of dword r.
	for i, pos := range []int{0} {
		for pv := range 8 {
			var t [64]byte
			for r := range 16 {
				if r < 8 {
					t[4*r+pos] = byte(8*pv + r)
				} else {
					t[4*r+pos] = byte(64 + 8*pv + r - 8)
				}
			}
			for j := 0; j < 64; j += 8 {
				var v uint64
				for b := range 8 {
					v |= uint64(t[j+b]) << (8 * b)
				}
				fmt.Fprintf(&s, "DATA qspread<>+%d(SB)/8, $%#x\n", 512*i+64*pv+j, v)
			}
		}
	}
	fmt.Fprintf(&s, "GLOBL qspread<>(SB), RODATA|NOPTR, $512\n")
	fmt.Fprintf(&d, "// Code generated by gen_quant.go; DO NOT EDIT.\n\n//go:build amd64 && !purego\n\npackage gemm\n")
	for _, t := range types {
		emitPanel(&s, t)
		fmt.Fprintf(&d, "\n// qtr%s dequantizes n 16-value chunks of 16 rows of %s blocks (row\n"+
			"// stride srcStride bytes; src at the block holding chunk c0, 0 ≤ c0 < %d)\n"+
			"// into n·16 rows × 16 float32 (row stride dstStride bytes). sc is scratch\n"+
			"// for one block's scale table (%d floats); idx holds the 16 row offsets\n"+
			"// r·srcStride. Where head (tail) is not nil the first (last) chunk goes\n"+
			"// there instead (16×16 floats) and dst is where the next (or no) chunk\n"+
			"// goes; not both when n is 1.\n//\n"+
			"//go:noescape\nfunc qtr%s(dst *float32, dstStride int, src *byte, srcStride int, sc *float32, idx *int32, c0, n int, head, tail *float32)\n",
			t.name, t.name, t.cpb, t.tables*t.groups*16, t.name)
	}
	for _, t := range types {
		emitScales(&s, t)
		fmt.Fprintf(&d, "\n// qsc%s writes the scale tables (as qtr%s computes them) of nblk\n"+
			"// blocks of 16 rows (row stride srcStride bytes, offsets in idx) to sc,\n"+
			"// one after the other.\n//\n"+
			"//go:noescape\nfunc qsc%s(sc *float32, src *byte, srcStride int, idx *int32, nblk int)\n", t.name, t.name, t.name)
	}
	for _, t := range types {
		for _, rm := range dotRMs {
			r, m := rm[0], rm[1]
			emitDotRM(&s, t, r, m)
			fmt.Fprintf(&d, "\n// qdot%dx%dx%s sets out[i·%d+r] = a_i · b_r for %d rows a_i of A (row\n"+
				"// stride lda bytes) and %d rows b_r of %s blocks (row stride srcStride\n"+
				"// bytes), each value dequantized once (scales from a qsc%s table; sc at\n"+
				"// row 0's entry of the first block), with dot4avx512F32's accumulators\n"+
				"// and reduction per pair, so the same sums bit for bit. out needs %d\n"+
				"// floats, tmp 1 KiB of scratch.\n//\n"+
				"//go:noescape\nfunc qdot%dx%dx%s(a *float32, lda int, src *byte, srcStride int, sc *float32, nblk int, out *float32, tmp *byte)\n",
				r, m, t.name, r, m, r, t.name, t.name, roundUp4(r*m), r, m, t.name)
		}
	}
	names := make([]string, 0, len(tails))
	for n := range tails {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := tails[n]
		emitTail(&s, n, v[0] == 1, op(v[1]), v[2])
		fmt.Fprintf(&d, "\n// %s is an internal subroutine of the qtr kernels (gen_quant.go\n// emitTail); not callable from Go.\nfunc %s()\n", n, n)
	}
	// Base tables of the lookup dot kernels: float32 −16..31, then −8..7.
	for i := range 48 {
		fmt.Fprintf(&s, "DATA qlut<>+%d(SB)/4, $%#x\n", 4*i, math.Float32bits(float32(i-16)))
	}
	for i := range 16 {
		fmt.Fprintf(&s, "DATA qlut<>+%d(SB)/4, $%#x\n", 192+4*i, math.Float32bits(float32(i-8)))
	}
	fmt.Fprintf(&s, "GLOBL qlut<>(SB), RODATA|NOPTR, $256\n")
	for i, v := range rotVecs {
		for j := range 16 {
			c := v[0]
			if j >= 8 {
				c = v[1]
			}
			fmt.Fprintf(&s, "DATA qrot<>+%d(SB)/4, $%d\n", 64*i+4*j, c)
		}
	}
	if len(rotVecs) > 0 {
		fmt.Fprintf(&s, "GLOBL qrot<>(SB), RODATA|NOPTR, $%d\n", 64*len(rotVecs))
	}
	must(os.WriteFile("quant_panel_amd64.s", s.Bytes(), 0o644))
	must(os.WriteFile("quant_panel_decl_amd64.go", d.Bytes(), 0o644))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func emitPanel(w *bytes.Buffer, t qtype) {
	p := func(format string, args ...any) { fmt.Fprintf(w, "\t"+format+"\n", args...) }
	name := "qtr" + t.name
	lbl := func(c int) string { return fmt.Sprintf("%s_c%d", name, c) }
	fmt.Fprintf(w, "\n// func %s(dst *float32, dstStride int, src *byte, srcStride int, sc *float32, idx *int32, c0, n int, head, tail *float32)\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-80\n", name)
	p("MOVQ dst+0(FP), DI")
	p("MOVQ dstStride+8(FP), DX")
	p("MOVQ src+16(FP), SI")
	p("MOVQ srcStride+24(FP), R8")
	p("MOVQ sc+32(FP), R10")
	p("MOVQ idx+40(FP), R11")
	p("MOVQ c0+48(FP), AX")
	p("MOVQ n+56(FP), CX")
	p("LEAQ (R8)(R8*2), R9") // 3·stride
	p("TESTQ CX, CX")
	p("JEQ %s_done", name)
	// A head tile goes to head (16 rows of 16 floats); R14 keeps dst
	// meanwhile.
	p("XORQ R14, R14")
	p("MOVQ head+64(FP), BX")
	p("TESTQ BX, BX")
	p("JEQ %s_block", name)
	p("MOVQ DI, R14")
	p("MOVQ BX, DI")
	p("MOVQ $64, DX")
	// Per block: the scale table, then the chunks from c0 (0 after the
	// first block).
	fmt.Fprintf(w, "%s_block:\n", name)
	p("VMOVDQU32 (R11), Z16")
	t.scales(p)
	for c := 1; c < t.cpb; c++ {
		p("CMPQ AX, $%d", c)
		p("JEQ %s", lbl(c))
	}
	for c := 0; c < t.cpb; c++ {
		fmt.Fprintf(w, "%s:\n", lbl(c))
		// The last chunk goes to tail where there is one.
		p("CMPQ CX, $1")
		p("JNE %s_t", lbl(c))
		p("MOVQ tail+72(FP), BX")
		p("TESTQ BX, BX")
		p("JEQ %s_t", lbl(c))
		p("MOVQ BX, DI")
		p("MOVQ $64, DX")
		fmt.Fprintf(w, "%s_t:\n", lbl(c))
		emitTile(p, t, c)
		p("TESTQ R14, R14")
		p("JEQ %s_h", lbl(c))
		p("MOVQ R14, DI")
		p("MOVQ dstStride+8(FP), DX")
		p("XORQ R14, R14")
		fmt.Fprintf(w, "%s_h:\n", lbl(c))
		p("DECQ CX")
		p("JEQ %s_done", name)
	}
	p("ADDQ $%d, SI", t.bb)
	p("XORQ AX, AX")
	p("JMP %s_block", name)
	fmt.Fprintf(w, "%s_done:\n", name)
	p("VZEROUPPER")
	p("RET")
}

// pfDist is how far ahead (bytes) the GEMV kernels prefetch each row.
const pfDist = 1024

// emitScales writes qsc<type>: the scale prologue of the kernels in a
// loop over blocks.
func emitScales(w *bytes.Buffer, t qtype) {
	p := func(format string, args ...any) { fmt.Fprintf(w, "\t"+format+"\n", args...) }
	name := "qsc" + t.name
	fmt.Fprintf(w, "\n// func %s(sc *float32, src *byte, srcStride int, idx *int32, nblk int)\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-40\n", name)
	p("MOVQ sc+0(FP), R10")
	p("MOVQ src+8(FP), SI")
	p("MOVQ srcStride+16(FP), R8")
	p("MOVQ idx+24(FP), R11")
	p("MOVQ nblk+32(FP), CX")
	p("LEAQ (R8)(R8*2), R9")
	p("TESTQ CX, CX")
	p("JEQ %s_done", name)
	fmt.Fprintf(w, "%s_block:\n", name)
	// This pass is the first to read the rows: fetch each row's coming
	// blocks well ahead (16 streams are more than the hardware follows).
	// (Measured: a gain for the K types; for the small blocks of the
	// others, one prefetch per block costs more than it saves.)
	if t.cpb > 2 {
		p("MOVQ SI, BX")
		for r := 0; r < 16; r++ {
			if r > 0 && r%4 == 0 {
				p("LEAQ (BX)(R8*4), BX")
			}
			base := []string{"(BX)", "(BX)(R8*1)", "(BX)(R8*2)", "(BX)(R9*1)"}[r%4]
			for i := 0; i < (t.bb+63)/64; i++ {
				p("PREFETCHT0 %d%s", pfDist+64*i, base)
			}
		}
	}
	p("VMOVDQU32 (R11), Z16")
	t.scales(p)
	p("ADDQ $%d, SI", t.bb)
	p("ADDQ $%d, R10", t.tables*t.groups*64)
	p("DECQ CX")
	p("JNE %s_block", name)
	fmt.Fprintf(w, "%s_done:\n", name)
	p("VZEROUPPER")
	p("RET")
}

// dotRMs are the rows of B and of A of the qdotRxM kernels (2·R·M
// accumulators).
var dotRMs = [][2]int{{4, 1}, {4, 2}, {2, 4}}

func roundUp4(m int) int { return (m + 3) &^ 3 }

// emitDotRM writes qdot<R>x<M>x<type>: R rows of B against M rows of A,
// each value of B dequantized once for all M; accumulators 2p, 2p+1 for
// the pair p = i·R + r (chunks c%2) as dot4avx512F32 has for each row.
func emitDotRM(w *bytes.Buffer, t qtype, R, M int) {
	p := func(format string, args ...any) { fmt.Fprintf(w, "\t"+format+"\n", args...) }
	name := fmt.Sprintf("qdot%dx%dx%s", R, M, t.name)
	np := R * M
	fmt.Fprintf(w, "\n// func %s(a *float32, lda int, src *byte, srcStride int, sc *float32, nblk int, out *float32, tmp *byte)\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-64\n", name)
	p("MOVQ a+0(FP), DI")
	p("MOVQ lda+8(FP), R8")
	p("MOVQ src+16(FP), SI")
	p("MOVQ srcStride+24(FP), R12")
	p("MOVQ sc+32(FP), R10")
	p("MOVQ nblk+40(FP), CX")
	p("MOVQ out+48(FP), DX")
	p("MOVQ tmp+56(FP), R14")
	p("LEAQ (R8)(R8*2), R9")
	p("LEAQ (R12)(R12*2), R13")
	for i := 0; i < 2*np; i++ {
		p("VPXORD %s, %s, %s", z(i), z(i), z(i))
	}
	lut := M == 1 && t.lutBits > 0
	prep := t.prep != nil && !lut
	// With one row of A, the types with one f16 scale per 32-value block
	// convert it here (VCVTPH2PS, exact) instead of reading a qsc table:
	// that pass over the rows costs more than it saves.
	dInline := M == 1 && t.groups == 1 && t.cpb == 2 // d (and m) at bytes 0 (and 2)
	if lut {
		// qlut<> offsets: value v at 64 + 4v for −16 ≤ v < 32; −8..7 at 192
		lo := 64 + 4*t.lutLo
		if t.lutLo == -8 {
			lo = 192
		}
		p("VMOVUPS qlut<>+%d(SB), Z24", lo)
		if t.lutBits == 5 {
			p("VMOVUPS qlut<>+%d(SB), Z25", lo+64)
		}
	}
	seen := map[int]bool{}
	for c := 0; c < t.cpb && !prep; c++ {
		for _, k := range t.consts(c) {
			if k != kBit && !seen[k] {
				seen[k] = true
				p("VPBROADCASTD qconst<>+%d(SB), %s", cOff(t, k), z(k))
			}
		}
	}
	p("TESTQ CX, CX")
	p("JEQ %s_reduce", name)
	fmt.Fprintf(w, "%s_block:\n", name)
	if prep {
		// The block's values of each row as bytes in tmp (256 per row).
		for _, bc := range t.pconsts {
			p("VPBROADCASTD qconst<>+%d(SB), %s", bc[1], z(bc[0]))
		}
		for r := 0; r < R; r++ {
			row := []string{"(SI)", "(SI)(R12*1)", "(SI)(R12*2)", "(SI)(R13*1)"}[r]
			t.prep(p, func(disp int) string { return fmt.Sprintf("%d%s", disp, row) },
				func(off int) string { return fmt.Sprintf("%d(R14)", 256*r+off) })
		}
	}
	if M > 4 {
		p("LEAQ (DI)(R8*4), R11")
	}
	arows := []string{"(DI)", "(DI)(R8*1)", "(DI)(R8*2)", "(DI)(R9*1)", "(R11)", "(R11)(R8*1)", "(R11)(R8*2)", "(R11)(R9*1)"}
	brows := []string{"(SI)", "(SI)(R12*1)", "(SI)(R12*2)", "(SI)(R13*1)"}
	for c := 0; c < t.cpb; c++ {
		for _, k := range t.consts(c) {
			if k == kBit && !prep {
				p("VPBROADCASTD qconst<>+%d(SB), %s", bitsOff+4*t.bit(c), z(kBit))
			}
		}
		g := t.group(c)
		for r := 0; r < R; r++ {
			addr := func(disp int) string {
				if disp == 0 {
					return brows[r]
				}
				return fmt.Sprintf("%d%s", disp, brows[r])
			}
			if c == 0 && t.cpb > 2 {
				for i := 0; i < (t.bb+63)/64; i++ {
					p("PREFETCHT0 %s", addr(pfDist+64*i))
				}
			} else if c == 0 {
				p("PREFETCHT0 %s", addr(max(256, 2*t.bb)))
			}
			zr, zt := z(16+r), z(20+r)
			dreg := z(8 + r)
			if lut {
				dreg = zt
			}
			mreg := z(12 + r)
			if dInline && c == 0 {
				p("VPBROADCASTW %s, Y%s", addr(0), dreg[1:])
				p("VCVTPH2PS Y%s, %s", dreg[1:], dreg)
				if t.tables == 2 {
					p("VPBROADCASTW %s, Y%s", addr(2), mreg[1:])
					p("VCVTPH2PS Y%s, %s", mreg[1:], mreg)
				}
			}
			if lut {
				if c%2 == 0 { // the row's table of the group (2 chunks)
					for h := 0; h < t.lutBits-3; h++ {
						tr := z(8 + 4*h + r)
						if dInline {
							p("VMULPS %s, Z%d, %s", dreg, 24+h, tr)
						} else {
							p("VMULPS.BCST %d(R10), Z%d, %s", g*64+4*r, 24+h, tr)
						}
						switch {
						case t.op == opMulAdd && dInline:
							p("VADDPS %s, %s, %s", mreg, tr, tr)
						case t.op == opMulSub:
							p("VSUBPS.BCST %d(R10), %s, %s", (t.groups+g)*64+4*r, tr, tr)
						case t.op == opMulAdd:
							p("VADDPS.BCST %d(R10), %s, %s", (t.groups+g)*64+4*r, tr, tr)
						}
					}
				}
				lrow := t.lrow
				if lrow == nil {
					lrow = t.row
				}
				lrow(p, c, addr, zr, zt)
				if t.lutBits == 4 {
					p("VPERMPS %s, %s, %s", z(8+r), zr, zr)
				} else {
					p("VPERMI2PS %s, %s, %s", z(12+r), z(8+r), zr)
				}
			} else if prep {
				widen := "VPMOVZXBD"
				if t.psigned {
					widen = "VPMOVSXBD"
				}
				p("%s %d(R14), %s", widen, 256*r+t.poff(c), zr)
			} else {
				t.row(p, c, addr, zr, zt)
			}
			if !lut {
				p("VCVTDQ2PS %s, %s", zr, zr)
				if dInline {
					p("VMULPS %s, %s, %s", dreg, zr, zr)
				} else {
					p("VMULPS.BCST %d(R10), %s, %s", g*64+4*r, zr, zr)
				}
				switch {
				case t.op == opMulAdd && dInline:
					p("VADDPS %s, %s, %s", mreg, zr, zr)
				case t.op == opMulSub:
					p("VSUBPS.BCST %d(R10), %s, %s", (t.groups+g)*64+4*r, zr, zr)
				case t.op == opMulAdd:
					p("VADDPS.BCST %d(R10), %s, %s", (t.groups+g)*64+4*r, zr, zr)
				}
			}
		}
		for i := 0; i < M; i++ {
			if R == 1 {
				p("VFMADD231PS %d%s, Z16, %s", 64*c, arows[i], z(2*i+c%2))
				continue
			}
			p("VMOVUPS %d%s, Z%d", 64*c, arows[i], 20+R-1) // zt of the last row: free now
			for r := 0; r < R; r++ {
				p("VFMADD231PS %s, Z%d, %s", z(16+r), 20+R-1, z(2*(i*R+r)+c%2))
			}
		}
	}
	p("ADDQ $%d, DI", 64*t.cpb)
	p("ADDQ $%d, SI", t.bb)
	p("ADDQ $%d, R10", t.tables*t.groups*64)
	p("DECQ CX")
	p("JNE %s_block", name)
	fmt.Fprintf(w, "%s_reduce:\n", name)
	// Per pair, dot4avx512F32's reduction: the two accumulators, then folds
	// to 128 bits, then for 4 pairs at a time three horizontal adds.
	x := func(i int) string { return fmt.Sprintf("X%d", i) }
	yy := func(i int) string { return fmt.Sprintf("Y%d", i) }
	for i := 0; i < np; i++ {
		p("VADDPS %s, %s, %s", z(2*i+1), z(2*i), z(2*i))
		t := 2*i + 1 // free now
		p("VEXTRACTF64X4 $1, %s, %s", z(2*i), yy(t))
		p("VADDPS %s, %s, %s", yy(t), yy(2*i), yy(2*i))
		p("VEXTRACTF128 $1, %s, %s", yy(2*i), x(t))
		p("VADDPS %s, %s, %s", x(t), x(2*i), x(2*i))
	}
	for i := np; i < roundUp4(np); i++ {
		p("VPXORD %s, %s, %s", z(2*i), z(2*i), z(2*i))
	}
	for q := 0; q < roundUp4(np)/4; q++ {
		r := 8 * q // x(r), x(r+2), x(r+4), x(r+6): pairs 4q..4q+3
		p("VHADDPS %s, %s, %s", x(r+2), x(r), x(r+1))
		p("VHADDPS %s, %s, %s", x(r+6), x(r+4), x(r+3))
		p("VHADDPS %s, %s, %s", x(r+3), x(r+1), x(r+5))
		p("VMOVUPS %s, %d(DX)", x(r+5), 16*q)
	}
	p("VZEROUPPER")
	p("RET")
}

// emitTileB is emitTile for types with byte-level unpacking: per 4 rows
// one zmm of 16-byte groups (a load and three inserts), the unpacking on
// 64 bytes at once, a 16×16 byte transpose (two rounds of VPERMI2B: values
// 0..7 and 8..15 of 8 rows, then 4 values of all 16 rows per register),
// then per value the 16 rows' bytes widened to dwords (lane r = row r),
// converted and scaled as in emitTile.
func emitTileB(p func(string, ...any), t qtype, c int) {
	for _, bc := range t.bconsts(c) {
		p("VPBROADCASTD qconst<>+%d(SB), %s", bc[1], z(bc[0]))
	}
	p("MOVQ SI, BX")
	signed := false
	for i := 0; i < 4; i++ {
		if i > 0 {
			p("LEAQ (BX)(R8*4), BX")
		}
		rows := []string{"(BX)", "(BX)(R8*1)", "(BX)(R8*2)", "(BX)(R9*1)"}
		// Prefetch each row's block two blocks ahead: one line per block
		// where blocks are shorter than a line, else every line, spread
		// over the block's tiles (line c/4 of rows 4·(c%4).. at tile c).
		switch {
		case t.cpb <= 2 && c == 0:
			for _, r := range rows {
				p("PREFETCHT0 %d%s", max(256, 2*t.bb), r)
			}
		case t.cpb > 2 && i == c%4 && 64*(c/4) < t.bb:
			for _, r := range rows {
				p("PREFETCHT0 %d%s", 2*t.bb+64*(c/4), r)
			}
		}
		load := func(disp int, dst string) {
			d := ""
			if disp != 0 {
				d = fmt.Sprint(disp)
			}
			p("VMOVDQU32 %s%s, %s", d, rows[0], x(dst))
			for l := 1; l < 4; l++ {
				p("VINSERTI32X4 $%d, %s%s, %s, %s", l, d, rows[l], dst, dst)
			}
		}
		row := func(l, disp int) string { return fmt.Sprintf("%d%s", disp, rows[l]) }
		signed = t.brow(p, c, load, row, z(i), z(4+i))
	}
	g := t.group(c)
	p("LEAQ %d(R10), R12", g*64)
	if t.op != opMul {
		p("LEAQ %d(R10), R13", (t.groups+g)*64)
	}
	p("CALL ·%s(SB)", tailName(signed, t.op, t.bsub))
}

// tails are the shared second halves of the byte-path tiles, by
// signedness, op and bsub (emitted after the kernels).
var tails = map[string][3]int{}

func tailName(signed bool, o op, bsub int) string {
	sg := 0
	if signed {
		sg = 1
	}
	name := fmt.Sprintf("qtail%d%d_%d", sg, o, bsub)
	tails[name] = [3]int{sg, int(o), bsub}
	return name
}

// emitTail writes a tile's second half as a subroutine (one copy for all
// chunks and types keeps the kernels small enough for the instruction
// cache next to the GEMM kernel): from Z0..Z3 (bytes of rows 4i..4i+3)
// the byte transpose, widening, conversion and scaling by the vectors at
// R12 (and R13), 16 rows of 16 floats stored from DI (stride DX).
func emitTail(w *bytes.Buffer, name string, signed bool, o op, bsub int) {
	p := func(format string, args ...any) { fmt.Fprintf(w, "\t"+format+"\n", args...) }
	fmt.Fprintf(w, "\n// func %s() (internal: registers in, see emitTail)\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT|NOFRAME, $0-0\n", name)
	t := qtype{op: o, bsub: bsub}
	if !signed {
		p("MOVQ $0x1111111111111111, AX")
		p("KMOVQ AX, K2")
	}
	// Round 1: Z8/Z9 = values 0..7/8..15 of rows 0..7 (8 bytes per value),
	// Z10/Z11 the same of rows 8..15.
	p("VMOVDQU64 qperm<>+0(SB), Z8")
	p("VPERMI2B Z1, Z0, Z8")
	p("VMOVDQU64 qperm<>+64(SB), Z9")
	p("VPERMI2B Z1, Z0, Z9")
	p("VMOVDQU64 qperm<>+0(SB), Z10")
	p("VPERMI2B Z3, Z2, Z10")
	p("VMOVDQU64 qperm<>+64(SB), Z11")
	p("VPERMI2B Z3, Z2, Z11")
	// Round 2. Unsigned: per value o, its byte of rows 0..7 (Z8/Z9) and
	// 8..15 (Z10/Z11) spread to byte 0 of dword r, the other bytes zeroed
	// (mask K2). Signed: Z12..Z15 = values 4q..4q+3 of the 16 rows (a lane
	// per value), then sign-extended per lane. (Measured: the spread wins
	// for unsigned bytes, the extension for signed ones.)
	if signed {
		p("VMOVDQU64 qperm<>+128(SB), Z12")
		p("VPERMI2B Z10, Z8, Z12")
		p("VMOVDQU64 qperm<>+192(SB), Z13")
		p("VPERMI2B Z10, Z8, Z13")
		p("VMOVDQU64 qperm<>+128(SB), Z14")
		p("VPERMI2B Z11, Z9, Z14")
		p("VMOVDQU64 qperm<>+192(SB), Z15")
		p("VPERMI2B Z11, Z9, Z15")
	}
	if t.bsub != 0 {
		p("VPBROADCASTD qconst<>+%d(SB), Z12", map[int]int{4: 16, 8: 4, 16: 8, 32: 24}[t.bsub])
	}
	for o := 0; o < 16; o++ {
		zo := z(16 + o%8)
		switch src := z(12 + o/4); {
		case !signed:
			p("VMOVDQU64 qspread<>+%d(SB), %s", 64*(o%8), zo)
			p("VPERMI2B.Z %s, %s, K2, %s", z(10+o/8), z(8+o/8), zo)
			if t.bsub != 0 {
				p("VPSUBD Z12, %s, %s", zo, zo)
			}
		case o%4 != 0:
			p("VEXTRACTI32X4 $%d, %s, %s", o%4, src, x(zo))
			p("VPMOVSXBD %s, %s", x(zo), zo)
		default:
			p("VPMOVSXBD %s, %s", x(src), zo)
		}
		p("VCVTDQ2PS %s, %s", zo, zo)
		p("VMULPS (R12), %s, %s", zo, zo)
		switch t.op {
		case opMulSub:
			p("VSUBPS (R13), %s, %s", zo, zo)
		case opMulAdd:
			p("VADDPS (R13), %s, %s", zo, zo)
		}
		p("VMOVUPS %s, (DI)", zo)
		p("ADDQ DX, DI")
	}
	p("RET")
}

func emitTile(p func(string, ...any), t qtype, c int) {
	if t.brow != nil {
		emitTileB(p, t, c)
		return
	}
	for _, k := range t.consts(c) {
		off := 0
		if k == kBit {
			off = bitsOff + 4*t.bit(c)
		} else {
			off = cOff(t, k)
		}
		p("VPBROADCASTD qconst<>+%d(SB), %s", off, z(k))
	}
	p("MOVQ SI, BX")
	for r := 0; r < 16; r++ {
		if r > 0 && r%4 == 0 {
			p("LEAQ (BX)(R8*4), BX")
		}
		base := []string{"(BX)", "(BX)(R8*1)", "(BX)(R8*2)", "(BX)(R9*1)"}[r%4]
		addr := func(disp int) string {
			if disp == 0 {
				return base
			}
			return fmt.Sprintf("%d%s", disp, base)
		}
		// Fetch the next blocks of each row ahead (16 row streams are more
		// than the hardware prefetcher follows).
		if c == 0 {
			p("PREFETCHT0 %s", addr(max(256, 2*t.bb)))
		}
		t.row(p, c, addr, z(r), z(16+r%8))
	}
	transpose(p)
	g := t.group(c)
	for o := 0; o < 16; o++ {
		p("VCVTDQ2PS %s, %s", z(o), z(o))
		p("VMULPS %d(R10), %s, %s", g*64, z(o), z(o))
		switch t.op {
		case opMulSub:
			p("VSUBPS %d(R10), %s, %s", (t.groups+g)*64, z(o), z(o))
		case opMulAdd:
			p("VADDPS %d(R10), %s, %s", (t.groups+g)*64, z(o), z(o))
		}
		p("VMOVUPS %s, (DI)", z(o))
		p("ADDQ DX, DI")
	}
}
