//go:build amd64 && !purego

package gemm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/zimage/zimage/weights"
)

//go:generate go run gen_kernels.go gen_transpose.go

type asmKernel func(a, b, c *float32, kc, ldb, ldc int, acc bool)

// wrapAsm adapts an assembly kernel to the slice signature; the slice
// expressions check the panel and C extents the kernel touches.
func wrapAsm(name, isa string, mr, nr int, f asmKernel, narrow ...asmKernel) kernel {
	k := kernel{name: name, isa: isa, mr: mr, nr: nr, fn: func(kc int, a, b, c []float32, ldb, ldc int, acc bool) {
		if kc <= 0 {
			return
		}
		a = a[:kc*mr]
		b = b[:(kc-1)*ldb+nr]
		c = c[:(mr-1)*ldc+nr]
		f(&a[0], &b[0], &c[0], kc, ldb, ldc, acc)
	}}
	for r, nf := range narrow {
		k.narrow = append(k.narrow, wrapAsm(fmt.Sprintf("%s-%drows", name, r+1), isa, r+1, nr, nf))
	}
	return k
}

func archKernels() []kernel {
	var ks []kernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL {
		ks = append(ks,
			wrapAsm("avx512", "avx512", 6, 64, kavx512_6x64,
				kavx512_1x64, kavx512_2x64, kavx512_3x64, kavx512_4x64, kavx512_5x64),
			wrapAsm("avx512-8x48", "avx512", 8, 48, kavx512_8x48),
			wrapAsm("avx512-14x32", "avx512", 14, 32, kavx512_14x32),
		)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks,
			wrapAsm("avx2", "avx2", 6, 16, kavx2_6x16,
				kavx2_1x16, kavx2_2x16, kavx2_3x16, kavx2_4x16, kavx2_5x16),
			wrapAsm("avx2-4x24", "avx2", 4, 24, kavx2_4x24),
		)
	}
	return ks
}

// useTranspose enables the AVX-512 16×16 transposing pack (tests turn it
// off to cover the scalar path).
var useTranspose = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// transposeRows packs the leading whole 16-row groups of a micro-panel over
// the leading whole 16-value blocks of k with the assembly transposer, and
// returns how many rows and k values it covered.
func transposeRows(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) (rows, ks int) {
	if !useTranspose || cols < 16 || kb < 16 {
		return 0, 0
	}
	nblk, groups := kb/16, cols/16
	k := src.k
	for g := 0; g < groups; g++ {
		_ = panel[(16*nblk-1)*nr+16*g+15] // last element written
		dst := &panel[16*g]
		first := (jbase+16*g)*k + p0       // element index of the tile's first value
		last := first + 15*k + 16*nblk - 1 // element index of the last value read
		switch {
		case src.kind == srcF32T:
			_ = src.f32[last]
			tr16F32(dst, nr*4, unsafe.Pointer(&src.f32[first]), k*4, nblk)
		case src.dt == weights.F32:
			_ = src.raw[last*4+3]
			tr16F32(dst, nr*4, unsafe.Pointer(&src.raw[first*4]), k*4, nblk)
		case src.dt == weights.BF16:
			_ = src.raw[last*2+1]
			tr16BF16(dst, nr*4, unsafe.Pointer(&src.raw[first*2]), k*2, nblk)
		case src.dt == weights.F16:
			_ = src.raw[last*2+1]
			tr16F16(dst, nr*4, unsafe.Pointer(&src.raw[first*2]), k*2, nblk)
		default:
			return 0, 0
		}
	}
	return groups * 16, nblk * 16
}

func dot4Available() bool { return active.isa != "" }

// dot4 sets sums[r] = Σ_p a[p]·B(j+r, p0+p) for r < 4 with the active
// ISA's assembly (tmp holds 4 widened row segments for dtypes the assembly
// does not read).
func dot4(sums *[4]float32, a []float32, src *bSource, j, p0 int, tmp []float32) {
	k := len(a)
	vl := 16
	if active.isa == "avx2" {
		vl = 8
	}
	kv := k &^ (2*vl - 1) // handled by the assembly
	*sums = [4]float32{}
	if kv > 0 {
		var fn func(a *float32, b unsafe.Pointer, ldb, k int, out *float32)
		var base unsafe.Pointer
		var ldb int
		first := j*src.k + p0             // element index of the first value read
		last := (j+3)*src.k + p0 + kv - 1 // and of the last
		switch {
		case src.kind == srcF32T:
			_ = src.f32[last]
			fn, base, ldb = pick(dot4avx512F32, dot4avx2F32), unsafe.Pointer(&src.f32[first]), src.k*4
		case src.dt == weights.F32:
			_ = src.raw[last*4+3]
			fn, base, ldb = pick(dot4avx512F32, dot4avx2F32), unsafe.Pointer(&src.raw[first*4]), src.k*4
		case src.dt == weights.BF16:
			_ = src.raw[last*2+1]
			fn, base, ldb = pick(dot4avx512BF16, dot4avx2BF16), unsafe.Pointer(&src.raw[first*2]), src.k*2
		case src.dt == weights.F16:
			_ = src.raw[last*2+1]
			fn, base, ldb = pick(dot4avx512F16, dot4avx2F16), unsafe.Pointer(&src.raw[first*2]), src.k*2
		default: // F8: widen the 4 row segments, then the float32 kernel
			for r := 0; r < 4; r++ {
				segF32(src, j+r, p0, kv, tmp[r*kv:])
			}
			fn, base, ldb = pick(dot4avx512F32, dot4avx2F32), unsafe.Pointer(&tmp[0]), kv*4
		}
		fn(&a[0], base, ldb, kv, &sums[0])
	}
	for p := kv; p < k; p++ {
		for r := 0; r < 4; r++ {
			sums[r] += a[p] * bAt(src, j+r, p0+p)
		}
	}
}

func pick(f512, f2 func(a *float32, b unsafe.Pointer, ldb, k int, out *float32)) func(a *float32, b unsafe.Pointer, ldb, k int, out *float32) {
	if active.isa == "avx2" {
		return f2
	}
	return f512
}

// archBF16Kernel is the VDPBF16PS kernel where the CPU has AVX512-BF16.
func archBF16Kernel() (kernel, bool) {
	if !hasAVX512BF16 {
		return kernel{}, false
	}
	k := wrapAsm("avx512bf16", "avx512", 6, 64, kbf16_6x64,
		kbf16_1x64, kbf16_2x64, kbf16_3x64, kbf16_4x64, kbf16_5x64)
	k.pairs = true
	for i := range k.narrow {
		k.narrow[i].pairs = true
	}
	return k, true
}

// hasAVX512BF16 says whether VDPBF16PS may run (tests may turn it off).
var hasAVX512BF16 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BF16

// transposePairs packs the leading whole 16-row groups of a bf16 pair
// micro-panel over the leading whole 16-pair blocks of the qn complete
// pairs: a bf16 row is a row of 32-bit pair words, so this is the float32
// 16×16 transpose. It returns how many rows and pairs it covered.
func transposePairs(panel []float32, nr int, src *bSource, jbase, cols, p0, qn int) (rows, qs int) {
	if !useTranspose || cols < 16 || qn < 16 {
		return 0, 0
	}
	nblk, groups := qn/16, cols/16
	k := src.k
	for g := 0; g < groups; g++ {
		_ = panel[(16*nblk-1)*nr+16*g+15]  // last word written
		first := (jbase+16*g)*k + p0       // element index of the tile's first value
		last := first + 15*k + 32*nblk - 1 // element index of the last value read
		_ = src.raw[last*2+1]
		tr16F32(&panel[16*g], nr*4, unsafe.Pointer(&src.raw[first*2]), k*2, nblk)
	}
	return groups * 16, nblk * 16
}

// hasAVX512VNNI says whether VPDPBUSD may run.
var hasAVX512VNNI = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VNNI

func pickQ8Kernel() q8Tile {
	switch {
	case hasAVX512VNNI:
		return asmQ8
	case hasAVXVNNI:
		return vexQ8
	}
	return genericQ8
}

// asmQ8 is kq8_4x48 behind bounds checks of the panels it reads.
var asmQ8 = q8AsmTile("avx512vnni", kq8_4x48)

// useQuantAsm enables q8QuantRow (tests turn it off to cover the Go loop).
var useQuantAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// quantRow quantizes one row of A for the Q8_0 kernel (see quantizeRowGo).
func quantRow(dst []byte, d []float32, x []float32, nb int) {
	if !useQuantAsm || nb == 0 {
		quantizeRowGo(dst, d, x, nb)
		return
	}
	_ = dst[(nb-1)*q8Block*q8MR+q8Block-1]
	_ = d[(nb-1)*q8MR]
	_ = x[nb*q8Block-1]
	q8QuantRow(&dst[0], &d[0], &x[0], nb)
}

// kqKernel holds the K-quant tile kernels in use (kq.go): kq8m_4x48,
// kq8s16_4x48 and kq8sm_4x48 on AVX512-VNNI, their 256-bit twins on
// AVX-VNNI, or the Go loop; tests switch it.
var kqKernel = pickKQKernel()

func pickKQKernel() kqTile {
	switch {
	case hasAVX512VNNI:
		return asmKQ
	case hasAVXVNNI:
		return vexKQ
	}
	return genericKQ
}

// asmKQ runs kq8m_4x48, kq8s16_4x48 or kq8sm_4x48 by format.
var asmKQ = kqAsmTile("avx512vnni", kq8m_4x48, kq8s16_4x48, kq8sm_4x48)

// transpose16Asm is Transpose16 on tr16F32 (which moves 32-bit words
// unchanged); false without AVX-512.
func transpose16Asm(dst []uint32, ldd int, src []uint32, lds, n int) bool {
	if !useTranspose {
		return false
	}
	tr16F32((*float32)(unsafe.Pointer(&dst[0])), 4*ldd, unsafe.Pointer(&src[0]), 4*lds, n/16)
	return true
}

// kqTranspose writes src's 16 rows of 64 words as 64 rows of 16 words,
// ld words apart, at dst (tr16F32 moves 32-bit words unchanged; without
// AVX-512, as on AVX-VNNI-only CPUs, the Go loop).
func kqTranspose(dst []uint32, ld int, src *[16][64]uint32) {
	if !useTranspose {
		kqTransposeGo(dst, ld, src)
		return
	}
	_ = dst[63*ld+15]
	tr16F32((*float32)(unsafe.Pointer(&dst[0])), 4*ld, unsafe.Pointer(&src[0][0]), 4*64, 4)
}
