//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_q8vnni.go

// kq8vex_4x48 is kq8_4x48 on 256-bit registers with AVX-VNNI (VEX
// VPDPBUSD): for CPUs with AVX-VNNI but no AVX512-VNNI.
//
//go:noescape
func kq8vex_4x48(a *byte, da *float32, b *int8, db *float32, corr *int32, c *float32, ldc, nblk int)

// kq8evex256_4x48 is kq8vex_4x48 with the EVEX encoding of VPDPBUSD
// (AVX512-VNNI + VL): the same instructions otherwise, so its tests cover
// the AVX-VNNI kernel's logic on machines without AVX-VNNI.
//
//go:noescape
func kq8evex256_4x48(a *byte, da *float32, b *int8, db *float32, corr *int32, c *float32, ldc, nblk int)

// The K-quant variants of both (kq.go): kq8s16_4x48's, kq8m_4x48's and
// kq8sm_4x48's arithmetic on 256-bit registers.
//
//go:noescape
func kq8vexs16_4x48(a *byte, da *float32, b *int8, db *float32, corr *int32, c *float32, ldc, nblk int)

//go:noescape
func kq8vexm_4x48(a *byte, da, sa *float32, b *int8, db, mb *float32, corr *int32, c *float32, ldc, nblk int)

//go:noescape
func kq8evex256s16_4x48(a *byte, da *float32, b *int8, db *float32, corr *int32, c *float32, ldc, nblk int)

//go:noescape
func kq8evex256m_4x48(a *byte, da, sa *float32, b *int8, db, mb *float32, corr *int32, c *float32, ldc, nblk int)

//go:noescape
func kq8vexsm_4x48(a *byte, da, sa *float32, b *int8, db, mb *float32, corr *int32, c *float32, ldc, nblk int)

//go:noescape
func kq8evex256sm_4x48(a *byte, da, sa *float32, b *int8, db, mb *float32, corr *int32, c *float32, ldc, nblk int)

// hasAVXVNNI says whether the VEX VPDPBUSD (AVX-VNNI) may run.
var hasAVXVNNI = cpu.X86.HasAVX2 && cpu.X86.HasAVXVNNI

// hasEVEX256VNNI says whether kq8evex256_4x48 may run.
var hasEVEX256VNNI = cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL

type q8Fn func(a *byte, da *float32, b *int8, db *float32, corr *int32, c *float32, ldc, nblk int)

// q8AsmTile wraps an assembly tile kernel behind bounds checks of the
// panels it reads and the tile it writes.
func q8AsmTile(name string, f q8Fn) q8Tile {
	return q8Tile{asm: true, name: name, fn: func(a []byte, da []float32, b []int8, db []float32, corr []int32, c []float32, ldc, nblk int) {
		if q8TileBounds(a, da, b, db, corr, c, ldc, nblk, 1) {
			f(&a[0], &da[0], &b[0], &db[0], &corr[0], &c[0], ldc, nblk)
		}
	}}
}

// q8TileBounds checks the panels an assembly tile kernel reads and the
// tile it writes (B scales and corrections sub per block and column), and
// reports whether there is anything to compute: with no blocks it clears
// the tile instead.
func q8TileBounds(a []byte, da []float32, b []int8, db []float32, corr []int32, c []float32, ldc, nblk, sub int) bool {
	if nblk <= 0 {
		clear(c[:3*ldc+q8NR])
		return false
	}
	_ = a[nblk*q8Block*q8MR-1]
	_ = da[nblk*q8MR-1]
	_ = b[nblk*q8Block*q8NR-1]
	_ = db[nblk*sub*q8NR-1]
	_ = corr[nblk*sub*q8NR-1]
	_ = c[3*ldc+q8NR-1]
	return true
}

var (
	vexQ8     = q8AsmTile("avxvnni", kq8vex_4x48)
	evex256Q8 = q8AsmTile("avx512vnni-ymm", kq8evex256_4x48)
)

type kqMFn func(a *byte, da, sa *float32, b *int8, db, mb *float32, corr *int32, c *float32, ldc, nblk int)

// kqAsmTile wraps the assembly K-quant tile kernels (with mins; two scale
// groups per block; both) behind bounds checks of the panels they read
// and the tile they write.
func kqAsmTile(name string, m kqMFn, s16 q8Fn, sm kqMFn) kqTile {
	return kqTile{asm: true, name: name, fn: func(f *kqFormat, a []byte, da, sa []float32, b []int8, db, mb []float32, corr []int32, c []float32, ldc, nblk int) {
		if !q8TileBounds(a, da, b, db, corr, c, ldc, nblk, f.sub) {
			return
		}
		if f.min {
			_ = sa[nblk*f.sub*q8MR-1]
			_ = mb[nblk*f.sub*q8NR-1]
		}
		switch {
		case f.min && f.sub == 1:
			m(&a[0], &da[0], &sa[0], &b[0], &db[0], &mb[0], &corr[0], &c[0], ldc, nblk)
		case f.min && f.sub == 2:
			sm(&a[0], &da[0], &sa[0], &b[0], &db[0], &mb[0], &corr[0], &c[0], ldc, nblk)
		case !f.min && f.sub == 2:
			s16(&a[0], &da[0], &b[0], &db[0], &corr[0], &c[0], ldc, nblk)
		default:
			panic("gemm: no K-quant tile kernel for this format")
		}
	}}
}

var (
	vexKQ     = kqAsmTile("avxvnni", kq8vexm_4x48, kq8vexs16_4x48, kq8vexsm_4x48)
	evex256KQ = kqAsmTile("avx512vnni-ymm", kq8evex256m_4x48, kq8evex256s16_4x48, kq8evex256sm_4x48)
)
