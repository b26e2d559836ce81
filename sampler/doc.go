// Package sampler holds everything between the networks that decides which
// numbers Z-Image-Turbo sees: the flow-match sigma schedule, the Euler update,
// the classifier-free-guidance combine and a bit-exact port of torch.randn on a
// CPU generator, so that a seed gives the same image as the reference pipeline.
//
// # Exactness and fused multiply-add
//
// Every function here is specified by the float32 operation sequence of the
// reference (torch, numpy, glibc), and the tests compare bit patterns. The Go
// spec lets a compiler fuse x*y + z into one FMA (arm64, ppc64le, s390x and
// amd64 with GOAMD64=v3 do), which rounds once instead of twice. So in this
// package every product that feeds an add is either wrapped in an explicit
// float32(...)/float64(...) conversion, which forbids fusion, or written as an
// explicit fma32/math.FMA where the reference itself fuses (GCC contracts the
// AVX2 intrinsics and glibc's FMA builds). The results are therefore the same
// on every GOARCH: in the arm64 and GOAMD64=v3 assembly of this package the
// only fused instructions are the math.FMA calls, and the tests pass with
// GOAMD64=v3.
package sampler
