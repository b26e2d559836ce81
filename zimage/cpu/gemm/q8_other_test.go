//go:build !amd64 || purego

package gemm

// archQ8Kernels: only the Go kernel exists off amd64.
func archQ8Kernels() (ks []q8Tile, skipped [][2]string) {
	return nil, [][2]string{{"avx512vnni", "not amd64"}}
}

// archKQKernels: only the Go kernel exists off amd64.
func archKQKernels() (ks []kqTile, skipped [][2]string) {
	return nil, [][2]string{{"avx512vnni", "not amd64"}}
}
