//go:build amd64 && !purego

package cpu

import "testing"

// TestPortablePaths reruns the softmax helpers and attention with the
// AVX-512 routines switched off, so the portable code is covered on
// machines that have AVX-512.
func TestPortablePaths(t *testing.T) {
	if !useAVX512 {
		t.Skip("no AVX-512: the portable path is what every test runs")
	}
	useAVX512 = false
	defer func() { useAVX512 = true }()
	t.Run("helpers", TestSoftmaxHelpers)
	t.Run("attention", TestAttention)
	t.Run("silu", TestSiLUVec)
	t.Run("elementwise", TestElementwise)
	t.Run("groupnorm", TestGroupNorm)
}
