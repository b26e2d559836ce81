package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// BenchmarkAttention runs the DiT attention shape (30 heads × 128), the
// 262 M-parameter cpu-anchor model's at 256² and 512² (8 heads × 128, 320
// and 1088 tokens) and the VAE mid-block shape (one head of 512); GFLOP/s
// counts 4·Lq·Lk·H·dh.
func BenchmarkAttention(b *testing.B) {
	for _, c := range []struct{ l, heads, dh int }{{320, 8, 128}, {1088, 8, 128}, {1024, 30, 128}, {4224, 30, 128}, {4096, 1, 512}} {
		for _, bf16 := range []bool{false, true} {
			name := fmt.Sprintf("L%d_H%d_dh%d", c.l, c.heads, c.dh)
			if bf16 {
				name += "/bf16"
			}
			b.Run(name, func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 1))
				be := New(WithBF16(bf16))
				n := c.l * c.heads * c.dh
				q := be.FromHost(randVec(r, n), c.l, c.heads*c.dh)
				k := be.FromHost(randVec(r, n), c.l, c.heads*c.dh)
				v := be.FromHost(randVec(r, n), c.l, c.heads*c.dh)
				b.ResetTimer()
				c0 := cpuSeconds()
				for range b.N {
					be.Free(be.Attention(q, k, v, c.heads, c.heads, 0.088, false))
				}
				if err := be.Err(); err != nil {
					b.Fatal(err)
				}
				flops := 4 * float64(c.l) * float64(c.l) * float64(c.heads*c.dh) * float64(b.N)
				reportFlops(b, flops, cpuSeconds()-c0)
			})
		}
	}
}

// BenchmarkConv3x3 runs VAE-like 3×3 convolutions (bf16 weights);
// GFLOP/s counts 2·Co·Ci·9·H·W.
func BenchmarkConv3x3(b *testing.B) {
	for _, c := range []struct{ ci, co, hw int }{{512, 512, 64}, {128, 128, 256}, {512, 512, 128}} {
		for _, bf16 := range []bool{false, true} {
			name := fmt.Sprintf("%dx%d_%dx%d", c.ci, c.co, c.hw, c.hw)
			if bf16 {
				name += "/bf16"
			}
			b.Run(name, func(b *testing.B) {
				r := rand.New(rand.NewPCG(2, 2))
				be := New(WithBF16(bf16))
				x := be.FromHost(randVec(r, c.ci*c.hw*c.hw), c.ci, c.hw, c.hw)
				wt, _ := weightOf(randVec(r, c.co*c.ci*9), weights.BF16, c.co, c.ci, 3, 3)
				w := be.Weight(wt)
				bias := be.FromHost(randVec(r, c.co), c.co)
				b.ResetTimer()
				c0 := cpuSeconds()
				for range b.N {
					be.Free(be.Conv2D(x, w, bias, 1))
				}
				if err := be.Err(); err != nil {
					b.Fatal(err)
				}
				flops := 2 * float64(c.co*c.ci*9) * float64(c.hw*c.hw) * float64(b.N)
				reportFlops(b, flops, cpuSeconds()-c0)
			})
		}
	}
}

// reportFlops reports GFLOP/s (wall clock) and GFLOP per CPU-second divided
// by the thread count ("GFLOP/s-ideal": what an unshared machine would give
// if every thread kept its core).
func reportFlops(b *testing.B, flops, cpu float64) {
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(flops/cpu/1e9*float64(New().Threads()), "GFLOP/s-ideal")
	}
}

// BenchmarkVAEElementwise times the non-GEMM ops of a VAE resnet at a
// 512×512, 128-channel feature map (GB/s counts one read and one write of
// the map per op, two reads for Add).
func BenchmarkVAEElementwise(b *testing.B) {
	const c, hw = 128, 512
	r := rand.New(rand.NewPCG(3, 3))
	be := New()
	x := be.FromHost(randVec(r, c*hw*hw), c, hw, hw)
	w, bias := be.FromHost(randVec(r, c), c), be.FromHost(randVec(r, c), c)
	bytes := float64(8 * c * hw * hw)
	for _, op := range []struct {
		name string
		f    func()
	}{
		{"GroupNorm", func() { be.Free(be.GroupNorm(x, w, bias, 32, 1e-6)) }},
		{"SiLU", func() { be.Free(be.SiLU(x)) }},
		{"Add", func() { be.Free(be.Add(x, x)) }},
		{"Upsample2x", func() { be.Free(be.Upsample2x(x)) }},
	} {
		b.Run(op.name, func(b *testing.B) {
			for range b.N {
				op.f()
			}
			if err := be.Err(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
