// Package nettest runs the Z-Image networks and the whole pipeline on the
// CUDA backend without a GPU: a fake driver whose kernels execute on the CPU
// through the host shim and whose cuBLASLt GEMMs run in Go. Its tests compare
// against the fixtures exactly as the CPU backend's tests do. (With a GPU,
// the same comparisons run on the device under -tags gpu.)
package nettest
