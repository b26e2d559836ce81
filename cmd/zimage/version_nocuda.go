//go:build windows

package main

// probeCUDAInfo: this build has no CUDA support.
func probeCUDAInfo() cudaInfo {
	const why = "CUDA is not supported on this platform"
	return cudaInfo{DriverError: why, CuBLASLtError: why}
}
