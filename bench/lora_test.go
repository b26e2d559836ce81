package bench

// LoRA costs on the real Z-Image-Turbo shapes (random bf16 weights, a
// random rank-64 LoRA on every Linear of a block: to_q/k/v, to_out.0, w1,
// w2, w3):
//
//	ZIMAGE_BENCH_REAL_ARCH=1 go test -run '^$' -bench 'LoRA' -benchtime 1x -timeout 60m -v ./bench/
//
// BenchmarkLoRAMerge merges the LoRA into one main block's seven weights
// (lora.Merge: float32 B·A, PEFT's rounding to bf16) and extrapolates to
// the 34 blocks of the DiT (30 main layers, 2+2 refiners). BenchmarkLoRARuntime
// runs dit.Forward of a 1-main-layer, 1-refiner-layer Turbo DiT with and
// without the run-time LoRA on both blocks (y += s·(x·Aᵀ)·Bᵀ) at
// ZIMAGE_BENCH_SIZES (default "512,1024") and reports the overhead in
// percent; the blocks are ≥ 95% of a step, so it is the per-step overhead.
// ZIMAGE_BENCH_RANK changes the rank (default 64).

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/cpu/gemm"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/lora"
)

var loraLinears = []string{"attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"}

// randomAdapter makes a rank-r LoRA (A, B ~ U(±1/√fan_in)·0.1) on every
// Linear of the given blocks of src.
func randomAdapter(src lora.Source, blocks []string, r int) *lora.Adapter {
	rng := rand.New(rand.NewPCG(7, 7))
	fill := func(n int, a float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = a * (2*rng.Float32() - 1)
		}
		return v
	}
	ad := &lora.Adapter{Path: "synthetic", Format: lora.FormatDiffusers, DType: weights.F32}
	for _, bl := range blocks {
		for _, l := range loraLinears {
			name := bl + "." + l + ".weight"
			t, _ := src.Tensor(name)
			out, in := t.Shape[0], t.Shape[1]
			ad.Deltas = append(ad.Deltas, &lora.Delta{Weight: name, Key: name, Rank: r, In: in, Out: out,
				A: fill(r*in, 0.1/float32(in)), B: fill(out*r, 0.1)})
		}
	}
	return ad
}

func BenchmarkLoRAMerge(b *testing.B) {
	if os.Getenv("ZIMAGE_BENCH_REAL_ARCH") != "1" {
		b.Skip("set ZIMAGE_BENCH_REAL_ARCH=1 (random weights of one Turbo block, 354 MB)")
	}
	r := realArchEnv(b, "ZIMAGE_BENCH_RANK", 64)
	cfg := weights.DefaultDiTConfig()
	cfg.NLayers, cfg.NRefinerLayers = 1, 0
	src := randomWeights(synthetic.DiT(cfg))
	ad := randomAdapter(src, []string{"layers.0"}, r)
	for _, d := range ad.Deltas { // materialize the weights outside the timing
		src.Tensor(d.Weight)
	}
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		t0 := time.Now()
		m, err := lora.Merge(context.Background(), src, []*lora.Adapter{ad}, []float32{0.8})
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		if len(m.Touched()) != 7 {
			b.Fatal("touched", m.Touched())
		}
	}
	per := total / time.Duration(b.N)
	blocks := weights.DefaultDiTConfig().NLayers + 2*weights.DefaultDiTConfig().NRefinerLayers
	b.ReportMetric(float64(per.Milliseconds()), "ms/block")
	b.ReportMetric(per.Seconds()*float64(blocks), "s/DiT")
	b.Logf("rank %d: %v per block (7 weights, %.0f MB bf16), %.1f s extrapolated to %d blocks; %d threads, gemm kernel %s",
		r, per.Round(time.Millisecond), float64(lora.MergeBytes(src, []*lora.Adapter{ad}))/1e6, per.Seconds()*float64(blocks), blocks, cpu.New().Threads(), gemm.KernelName())
}

func BenchmarkLoRARuntime(b *testing.B) {
	if os.Getenv("ZIMAGE_BENCH_REAL_ARCH") != "1" {
		b.Skip("set ZIMAGE_BENCH_REAL_ARCH=1 (builds ~0.7 GB of random bf16 weights; minutes on 2 cores)")
	}
	r := realArchEnv(b, "ZIMAGE_BENCH_RANK", 64)
	cfg := weights.DefaultDiTConfig()
	cfg.NLayers, cfg.NRefinerLayers = 1, 1
	sizes := []int{512, 1024}
	if s := os.Getenv("ZIMAGE_BENCH_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 16 || n%16 != 0 {
				b.Fatalf("ZIMAGE_BENCH_SIZES: bad size %q", f)
			}
			sizes = append(sizes, n)
		}
	}
	be := cpu.New()
	src := randomWeights(synthetic.DiT(cfg))
	m, err := dit.New(be, cfg, src)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ad := randomAdapter(src, []string{"layers.0", "noise_refiner.0"}, r)
	byWeight := map[string][]dit.LoRA{}
	for _, d := range ad.Deltas {
		A, B := be.FromHost(d.A, d.Rank, d.In), be.FromHost(d.B, d.Out, d.Rank)
		defer be.Free(A, B)
		byWeight[d.Weight] = []dit.LoRA{{A: A, B: B, Scale: 0.8}}
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 3))
	const capN = 32
	feats := make([]float32, capN*cfg.CapFeatDim)
	for i := range feats {
		feats[i] = float32(rng.NormFloat64())
	}
	capt, err := m.PrepareCaption(ctx, feats, capN, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer capt.Free()
	for _, size := range sizes {
		b.Run(fmt.Sprintf("%dx%d", size, size), func(b *testing.B) {
			x := make([]float32, cfg.InChannels*(size/8)*(size/8))
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			fwd := func() time.Duration {
				t0 := time.Now()
				if _, err := m.Forward(ctx, x, size/8, size/8, 0.5, capt, nil); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			fwd() // warm-up
			b.ResetTimer()
			// Alternate so both see the same machine load, and keep the
			// fastest of each: on a shared machine the minimum is the
			// least disturbed run.
			plain, withLoRA := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
			for range b.N {
				if err := m.SetLoRAs(nil); err != nil {
					b.Fatal(err)
				}
				plain = min(plain, fwd())
				if err := m.SetLoRAs(byWeight); err != nil {
					b.Fatal(err)
				}
				withLoRA = min(withLoRA, fwd())
			}
			m.SetLoRAs(nil)
			n := time.Duration(1)
			over := 100 * (withLoRA.Seconds() - plain.Seconds()) / plain.Seconds()
			b.ReportMetric(over, "%overhead")
			b.ReportMetric(float64((plain / n).Milliseconds()), "ms-plain")
			b.ReportMetric(float64((withLoRA / n).Milliseconds()), "ms-lora")
			b.Logf("%d²: plain %v, with rank-%d LoRA %v per forward (2 blocks): %+.1f%%", size, (plain / n).Round(time.Millisecond), r, (withLoRA / n).Round(time.Millisecond), over)
		})
	}
}

// BenchmarkLoRALinears times, op by op (fastest of ZIMAGE_BENCH_REPS runs,
// default 5, so that a shared machine disturbs it less), the seven Linear
// layers of one Turbo block at the token counts of 512² and 1024² (1024+32
// and 4096+32 rows), without and with a rank-64 run-time LoRA on each, on
// the CPU backend, and reports the LoRA's share of the block's GEMM time.
func BenchmarkLoRALinears(b *testing.B) {
	if os.Getenv("ZIMAGE_BENCH_REAL_ARCH") != "1" {
		b.Skip("set ZIMAGE_BENCH_REAL_ARCH=1 (random weights of one Turbo block, 354 MB)")
	}
	r := realArchEnv(b, "ZIMAGE_BENCH_RANK", 64)
	reps := max(1, realArchEnv(b, "ZIMAGE_BENCH_REPS", 5))
	cfg := weights.DefaultDiTConfig()
	cfg.NLayers, cfg.NRefinerLayers = 1, 0
	src := randomWeights(synthetic.DiT(cfg))
	be := cpu.New()
	ad := randomAdapter(src, []string{"layers.0"}, r)
	rng := rand.New(rand.NewPCG(5, 5))
	for _, rows := range []int{1056, 4128} {
		b.Run(fmt.Sprintf("M%d", rows), func(b *testing.B) {
			var base, extra time.Duration
			for _, d := range ad.Deltas {
				wt, _ := src.Tensor(d.Weight)
				w := be.Weight(wt)
				xs := make([]float32, rows*d.In)
				for i := range xs {
					xs[i] = float32(rng.NormFloat64())
				}
				x := be.FromHost(xs, rows, d.In)
				A, B := be.FromHost(d.A, d.Rank, d.In), be.FromHost(d.B, d.Out, d.Rank)
				best := func(f func()) time.Duration {
					t := time.Duration(math.MaxInt64)
					for range reps {
						t0 := time.Now()
						f()
						t = min(t, time.Since(t0))
					}
					return t
				}
				bt := best(func() { be.Free(be.MatMul(x, w, nil)) })
				y := be.MatMul(x, w, nil)
				lt := best(func() { // the dit package's run-time LoRA path
					tt := be.MatMul(A, x, nil)
					t := be.Transpose(tt)
					ts := be.Scale(t, 0.8, 0)
					u := be.MatMul(ts, B, nil)
					be.Free(tt, t, ts, u, be.Add(y, u))
				})
				be.Free(x, A, B, y, w)
				b.Logf("%-40s M=%d: GEMM %v, LoRA %v (%.1f%%)", d.Weight, rows, bt.Round(time.Microsecond), lt.Round(time.Microsecond), 100*lt.Seconds()/bt.Seconds())
				base += bt
				extra += lt
			}
			pct := 100 * extra.Seconds() / base.Seconds()
			b.ReportMetric(pct, "%of-gemm")
			b.Logf("block M=%d: GEMMs %v, rank-%d LoRA %v = %.1f%% of the GEMM time", rows, base.Round(time.Millisecond), r, extra.Round(time.Millisecond), pct)
		})
	}
}
