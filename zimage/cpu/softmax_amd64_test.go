//go:build amd64 && !purego

package cpu

import "testing"

// TestVectorPaths reruns the vector helpers, the element-wise kernels and
// the ops built on them with AVX-512 off (AVX2 where present) and with both
// off (portable Go), so every path is covered on a machine that has them
// all (the other tests run the AVX-512 path).
func TestVectorPaths(t *testing.T) {
	save512, save2 := useAVX512, useAVX2
	defer func() { useAVX512, useAVX2 = save512, save2 }()
	for _, p := range []struct {
		name         string
		avx512, avx2 bool
		have         bool
	}{
		{"avx2", false, true, save2},
		{"portable", false, false, true},
	} {
		if !p.have {
			t.Logf("%s: not available on this machine", p.name)
			continue
		}
		useAVX512, useAVX2 = p.avx512, p.avx2
		t.Run(p.name+"/helpers", TestSoftmaxHelpers)
		t.Run(p.name+"/attention", TestAttention)
		t.Run(p.name+"/silu", TestSiLUVec)
		t.Run(p.name+"/elementwise", TestElementwise)
		t.Run(p.name+"/groupnorm", TestGroupNorm)
		t.Run(p.name+"/ew-kernels", TestEWKernels)
		t.Run(p.name+"/sumruns", TestSumRuns)
		t.Run(p.name+"/groupnorm-by-group", TestGroupNormByGroup)
		t.Run(p.name+"/fused", TestFusedMatchesSequence)
		t.Run(p.name+"/norms", TestNorms)
		t.Run(p.name+"/rope", TestRoPE)
		t.Run(p.name+"/layout", TestLayoutOps)
	}
}
