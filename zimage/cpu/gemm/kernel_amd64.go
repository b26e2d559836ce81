//go:build amd64 && !purego

package gemm

func archKernels() []kernel { return nil }
