package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/zimage/compute"
)

// BenchmarkFused compares each fused chain with its op sequence on a DiT
// activation at 512² ([1056, 3840], 30 heads × 128); ns/op and CPU ms/op.
func BenchmarkFused(b *testing.B) {
	const l, heads, dh = 1056, 30, 128
	const d = heads * dh
	r := rand.New(rand.NewPCG(1, 2))
	be := New()
	x := be.FromHost(randVec(r, l*d), l, d)
	y := be.FromHost(randVec(r, l*d), l, d)
	w := be.FromHost(randVec(r, d), d)
	s := be.FromHost(randVec(r, d), d)
	hw := be.FromHost(randVec(r, dh), dh)
	cos := be.FromHost(randVec(r, l*dh/2), l, dh/2)
	sin := be.FromHost(randVec(r, l*dh/2), l, dh/2)
	for _, impl := range []struct {
		name string
		b    compute.Backend
	}{{"fused", be}, {"sequence", plain{be}}} {
		run := func(name string, f func() []compute.Tensor) {
			b.Run(name+"/"+impl.name, func(b *testing.B) {
				c0 := cpuSeconds()
				for b.Loop() {
					be.Free(f()...)
				}
				b.ReportMetric((cpuSeconds()-c0)/float64(b.N)*1e3, "cpu-ms/op")
			})
		}
		run("RMSNormModulate", func() []compute.Tensor { return []compute.Tensor{fused.RMSNormModulate(impl.b, x, w, s, 1e-6)} })
		run("RMSNormGatedAdd", func() []compute.Tensor { return []compute.Tensor{fused.RMSNormGatedAdd(impl.b, x, y, w, s, 1e-6)} })
		run("HeadRMSNormRoPE", func() []compute.Tensor {
			return []compute.Tensor{fused.HeadRMSNormRoPE(impl.b, x, hw, cos, sin, heads, 1e-5, true)}
		})
	}
}
