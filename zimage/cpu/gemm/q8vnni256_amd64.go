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

// hasAVXVNNI says whether the VEX VPDPBUSD (AVX-VNNI) may run.
var hasAVXVNNI = cpu.X86.HasAVX2 && cpu.X86.HasAVXVNNI

// hasEVEX256VNNI says whether kq8evex256_4x48 may run.
var hasEVEX256VNNI = cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL

type q8Fn func(a *byte, da *float32, b *int8, db *float32, corr *int32, c *float32, ldc, nblk int)

// q8AsmTile wraps an assembly tile kernel behind bounds checks of the
// panels it reads and the tile it writes.
func q8AsmTile(name string, f q8Fn) q8Tile {
	return q8Tile{asm: true, name: name, fn: func(a []byte, da []float32, b []int8, db []float32, corr []int32, c []float32, ldc, nblk int) {
		if nblk <= 0 {
			clear(c[:3*ldc+q8NR])
			return
		}
		_ = a[nblk*q8Block*q8MR-1]
		_ = da[nblk*q8MR-1]
		_ = b[nblk*q8Block*q8NR-1]
		_ = db[nblk*q8NR-1]
		_ = corr[nblk*q8NR-1]
		_ = c[3*ldc+q8NR-1]
		f(&a[0], &da[0], &b[0], &db[0], &corr[0], &c[0], ldc, nblk)
	}}
}

var (
	vexQ8     = q8AsmTile("avxvnni", kq8vex_4x48)
	evex256Q8 = q8AsmTile("avx512vnni-ymm", kq8evex256_4x48)
)
