// Package kernels holds the CUDA kernels of the GPU backend: the .cu sources,
// and the fatbin built from them by scripts/build-kernels.sh (sm_80, sm_86,
// sm_89, sm_90 cubins plus compute_80 PTX), embedded so that neither go build
// nor go test needs the CUDA toolkit. kernels.manifest records the toolchain
// and the sha256 of every source; a test fails when they disagree.
package kernels

//go:generate ../../scripts/build-kernels.sh

import (
	_ "embed"
	"strings"
)

//go:embed kernels.fatbin
var fatbin string

//go:embed kernels.sigs
var sigs string

// Fatbin returns a copy of the fatbin in 8-byte-aligned memory, as
// cuModuleLoadData expects.
func Fatbin() []byte {
	buf := make([]uint64, (len(fatbin)+7)/8)
	b := unsafeBytes(buf)[:len(fatbin)]
	copy(b, fatbin)
	return b
}

// Signatures maps every kernel in the fatbin to its parameter kinds, one
// letter per parameter: p (64-bit pointer or integer), i (32-bit integer),
// f (float32). Launches are checked against it.
func Signatures() map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(sigs), "\n") {
		name, kinds, _ := strings.Cut(line, " ")
		m[name] = kinds
	}
	return m
}
