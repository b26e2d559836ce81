//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go

type asmKernel func(a, b, c *float32, kc, ldc int, acc bool)

// wrapAsm adapts an assembly kernel to the slice signature; the slice
// expressions check the packed-panel and C extents the kernel touches.
func wrapAsm(name string, mr, nr int, f asmKernel) kernel {
	return kernel{name: name, mr: mr, nr: nr, fn: func(kc int, a, b, c []float32, ldc int, acc bool) {
		if kc <= 0 {
			return
		}
		a = a[:kc*mr]
		b = b[:kc*nr]
		c = c[:(mr-1)*ldc+nr]
		f(&a[0], &b[0], &c[0], kc, ldc, acc)
	}}
}

func archKernels() []kernel {
	var ks []kernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL {
		ks = append(ks,
			wrapAsm("avx512", 14, 32, kavx512_14x32),
			wrapAsm("avx512-12x32", 12, 32, kavx512_12x32),
			wrapAsm("avx512-8x48", 8, 48, kavx512_8x48),
			wrapAsm("avx512-6x64", 6, 64, kavx512_6x64),
		)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks,
			wrapAsm("avx2", 6, 16, kavx2_6x16),
			wrapAsm("avx2-4x24", 4, 24, kavx2_4x24),
		)
	}
	return ks
}
