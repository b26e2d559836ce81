package bench

// One DiT step of the real Z-Image-Turbo architecture on the CPU backend,
// with random bf16 weights built in memory (no checkpoint):
//
//	ZIMAGE_BENCH_REAL_ARCH=1 go test -run '^$' -bench RealArchDiT -benchtime 1x -timeout 60m -v ./bench/
//
// The model is the Turbo config (dim 3840, 30 heads of 128, FFN 10240) cut
// to ZIMAGE_BENCH_LAYERS main layers (default 2) and ZIMAGE_BENCH_REFINERS
// noise/context refiner layers (default 1), 354 MB of bf16 per block. Each
// size in ZIMAGE_BENCH_SIZES (default "256"; e.g. "256,512,1024") runs one
// Forward per iteration on a caption of ZIMAGE_BENCH_CAP tokens (default
// 32) after one warm-up Forward. A timing wrapper around the backend splits
// every block into large GEMMs (M > 8), GEMVs (adaLN, M = 1), attention and
// everything else (norms, RoPE, elementwise, layout), and a trace marks the
// block boundaries. Reported per size (ms unless noted): block (mean main
// layer), gemm, attn, gemv, other (its parts), nref (noise refiner
// block), cref (context refiner block, run once per generation), edge
// (embedders + final layer), and the extrapolation to the real depth: step-s
// (2 noise refiners + 30 main layers + edge) and 8step-s (8 steps + 2
// context refiners). The log also
// extrapolates the measured rates to 256², 512² and 1024² (linear FLOP ∝
// tokens, attention FLOP ∝ L², spec §6.1); larger M runs the GEMM at least as
// efficiently, so those figures are upper bounds.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/cpu/gemm"
	"github.com/zimage/zimage/zimage/dit"
)

// randomWeights fills a synthetic tensor list with random bf16 data on
// first use (synthetic.RandomBF16): Linear weights with unit output
// variance, norm gains 1, biases 0, pad tokens ±1.7.
func randomWeights(src *synthetic.Source) *synthetic.Random {
	return &synthetic.Random{Src: src, Seed: 1, Scales: synthetic.Scales{Pad: 1.7}}
}

// opTimer wraps a backend and accumulates wall time per op class (the CPU
// backend's ops are synchronous, so wall time is the op's time).
type opTimer struct {
	compute.Backend
	gemm, gemv, attn time.Duration
	ops              map[string]time.Duration // the larger "other" ops, by name

	// q8: GEMMs (M > 8) with bf16 weights run on Q8_0 copies of them
	// (quantized on first use) through cpu.Backend.MatMulQ80.
	q8     bool
	cpu    *cpu.Backend
	wmap   map[compute.Tensor]*weights.Tensor
	qcache map[*weights.Tensor]*gemm.Q80Packed

	// kq (Q4_K or Q6_K; 0: off): GEMMs (M > 8) with bf16 weights run on
	// K-quant copies of them (quantized on first use) through the backend's
	// MatMul, which in bf16 mode takes the int8 path for products with
	// enough rows (gemm.KQuantDot) and the bf16 path for the others.
	kq      weights.DType
	kqcache map[*weights.Tensor]compute.Tensor
}

// kqWeight returns the backend weight of the kq copy of a bf16 weight
// [n, k] (nil when k is not a multiple of 256).
func (o *opTimer) kqWeight(w compute.Tensor) compute.Tensor {
	wt, ok := o.wmap[w]
	if !ok || wt.DType != weights.BF16 || len(wt.Shape) != 2 || wt.Shape[1]%256 != 0 {
		return nil
	}
	if q, ok := o.kqcache[wt]; ok {
		return q
	}
	if o.kqcache == nil {
		o.kqcache = map[*weights.Tensor]compute.Tensor{}
	}
	n := wt.Shape[0] * wt.Shape[1]
	f := make([]float32, n)
	for i := range f {
		f[i] = weights.BF16ToF32(uint16(wt.Data[2*i]) | uint16(wt.Data[2*i+1])<<8)
	}
	raw := make([]byte, n/o.kq.BlockSize()*o.kq.BlockBytes())
	var wg sync.WaitGroup
	rows, per := wt.Shape[0], (wt.Shape[0]+7)/8
	rb, rf := wt.Shape[1]/o.kq.BlockSize()*o.kq.BlockBytes(), wt.Shape[1]
	for r0 := 0; r0 < rows; r0 += per {
		wg.Add(1)
		go func(r0, r1 int) {
			defer wg.Done()
			if err := weights.Quantize(raw[r0*rb:r1*rb], f[r0*rf:r1*rf], o.kq); err != nil {
				panic(err) // shapes checked above
			}
		}(r0, min(rows, r0+per))
	}
	wg.Wait()
	q := o.cpu.Weight(&weights.Tensor{Name: wt.Name, DType: o.kq, Shape: wt.Shape, Data: raw})
	o.kqcache[wt] = q
	return q
}

func (o *opTimer) Weight(w *weights.Tensor) compute.Tensor {
	t := o.Backend.Weight(w)
	if o.wmap == nil {
		o.wmap = map[compute.Tensor]*weights.Tensor{}
	}
	o.wmap[t] = w
	return t
}

// q8Weight returns the Q8_0 copy of a bf16 weight [n, k], repacked for the
// kernel (nil when it has no whole blocks).
func (o *opTimer) q8Weight(w compute.Tensor) *gemm.Q80Packed {
	wt, ok := o.wmap[w]
	if !ok || wt.DType != weights.BF16 || len(wt.Shape) != 2 || wt.Shape[1]%32 != 0 {
		return nil
	}
	if q, ok := o.qcache[wt]; ok {
		return q
	}
	if o.qcache == nil {
		o.qcache = map[*weights.Tensor]*gemm.Q80Packed{}
	}
	q, err := gemm.PackQ80(quantizeQ80(wt.Data, wt.Shape[0]*wt.Shape[1]), wt.Shape[0], wt.Shape[1])
	if err != nil {
		panic(err) // shapes checked above
	}
	o.qcache[wt] = q
	return q
}

// quantizeQ80 quantizes n bf16 values to ggml Q8_0 blocks (d = max|x|/127
// stored as float16, q = round(x/d)), in parallel.
func quantizeQ80(bf []byte, n int) []byte {
	nb := n / 32
	out := make([]byte, nb*34)
	var wg sync.WaitGroup
	per := (nb + 7) / 8
	for b0 := 0; b0 < nb; b0 += per {
		wg.Add(1)
		go func(b0 int) {
			defer wg.Done()
			var x [32]float32
			for blk := b0; blk < min(nb, b0+per); blk++ {
				var amax float32
				for t := range 32 {
					x[t] = weights.BF16ToF32(uint16(bf[2*(blk*32+t)]) | uint16(bf[2*(blk*32+t)+1])<<8)
					amax = max(amax, float32(math.Abs(float64(x[t]))))
				}
				d := amax / 127
				h := weights.F32ToF16(d)
				out[blk*34], out[blk*34+1] = byte(h), byte(h>>8)
				var id float32
				if d != 0 {
					id = 1 / d
				}
				for t := range 32 {
					out[blk*34+2+t] = byte(int8(max(-127, min(127, math.Round(float64(x[t]*id))))))
				}
			}
		}(b0)
	}
	wg.Wait()
	return out
}

func (o *opTimer) time(name string, t0 time.Time) {
	if o.ops == nil {
		o.ops = map[string]time.Duration{}
	}
	o.ops[name] += time.Since(t0)
}

func (o *opTimer) RMSNorm(x, w compute.Tensor, eps float32) compute.Tensor {
	defer o.time("RMSNorm", time.Now())
	return o.Backend.RMSNorm(x, w, eps)
}

func (o *opTimer) RoPE(x, cos, sin compute.Tensor, heads int, interleaved bool) compute.Tensor {
	defer o.time("RoPE", time.Now())
	return o.Backend.RoPE(x, cos, sin, heads, interleaved)
}

func (o *opTimer) SwiGLU(gate, up compute.Tensor) compute.Tensor {
	defer o.time("SwiGLU", time.Now())
	return o.Backend.SwiGLU(gate, up)
}

func (o *opTimer) Modulate(x, scale compute.Tensor) compute.Tensor {
	defer o.time("Modulate", time.Now())
	return o.Backend.Modulate(x, scale)
}

func (o *opTimer) GatedAdd(x, y, gate compute.Tensor) compute.Tensor {
	defer o.time("GatedAdd", time.Now())
	return o.Backend.GatedAdd(x, y, gate)
}

func (o *opTimer) Free(ts ...compute.Tensor) {
	defer o.time("Free", time.Now())
	o.Backend.Free(ts...)
}

func (o *opTimer) MatMul(x, w, bias compute.Tensor) compute.Tensor {
	if o.kq != 0 && x.Shape()[0] > 8 {
		if q := o.kqWeight(w); q != nil {
			t0 := time.Now()
			r := o.cpu.MatMul(x, q, bias)
			o.gemm += time.Since(t0)
			return r
		}
	}
	if o.q8 && x.Shape()[0] > 8 {
		if q := o.q8Weight(w); q != nil {
			t0 := time.Now()
			r := o.cpu.MatMulQ80Packed(x, q, bias)
			o.gemm += time.Since(t0)
			return r
		}
	}
	t0 := time.Now()
	r := o.Backend.MatMul(x, w, bias)
	if x.Shape()[0] <= 8 {
		o.gemv += time.Since(t0)
	} else {
		o.gemm += time.Since(t0)
	}
	return r
}

// MatMulShared times the shared-input products (q, k, v; w1, w3) as GEMMs
// on the CPU backend (compute.MatMulSharer); in the Q8_0 mode on the Q8_0
// copies, x quantized once (cpu.Backend.MatMulQ80PackedShared).
func (o *opTimer) MatMulShared(x compute.Tensor, ws ...compute.Tensor) []compute.Tensor {
	if o.kq != 0 && x.Shape()[0] > 8 {
		qs := make([]compute.Tensor, len(ws))
		for i, w := range ws {
			if qs[i] = o.kqWeight(w); qs[i] == nil {
				qs = nil
				break
			}
		}
		if qs != nil {
			t0 := time.Now()
			r := o.cpu.MatMulShared(x, qs...)
			o.gemm += time.Since(t0)
			return r
		}
	}
	if o.q8 && x.Shape()[0] > 8 {
		qs := make([]*gemm.Q80Packed, len(ws))
		for i, w := range ws {
			if qs[i] = o.q8Weight(w); qs[i] == nil {
				qs = nil
				break
			}
		}
		if qs != nil {
			t0 := time.Now()
			r := o.cpu.MatMulQ80PackedShared(x, qs...)
			o.gemm += time.Since(t0)
			return r
		}
		out := make([]compute.Tensor, len(ws))
		for i, w := range ws {
			out[i] = o.MatMul(x, w, nil)
		}
		return out
	}
	t0 := time.Now()
	r := o.cpu.MatMulShared(x, ws...)
	if x.Shape()[0] <= 8 {
		o.gemv += time.Since(t0)
	} else {
		o.gemm += time.Since(t0)
	}
	return r
}

func (o *opTimer) Attention(q, k, v compute.Tensor, heads, kvHeads int, scale float32, causal bool) compute.Tensor {
	t0 := time.Now()
	r := o.Backend.Attention(q, k, v, heads, kvHeads, scale, causal)
	o.attn += time.Since(t0)
	return r
}

// The fused chains the DiT calls (cuda/fused), forwarded when the wrapped
// backend has them.

func (o *opTimer) RMSNormModulate(x, w, scale compute.Tensor, eps float32) compute.Tensor {
	defer o.time("RMSNormModulate", time.Now())
	return fused.RMSNormModulate(o.Backend, x, w, scale, eps)
}

func (o *opTimer) RMSNormGatedAdd(x, y, w, gate compute.Tensor, eps float32) compute.Tensor {
	defer o.time("RMSNormGatedAdd", time.Now())
	return fused.RMSNormGatedAdd(o.Backend, x, y, w, gate, eps)
}

func (o *opTimer) AddRMSNorm(x, y, w compute.Tensor, eps float32) (compute.Tensor, compute.Tensor) {
	defer o.time("AddRMSNorm", time.Now())
	return fused.AddRMSNorm(o.Backend, x, y, w, eps)
}

func (o *opTimer) HeadRMSNormRoPE(x, w, cos, sin compute.Tensor, heads int, eps float32, il bool) compute.Tensor {
	defer o.time("HeadRMSNormRoPE", time.Now())
	return fused.HeadRMSNormRoPE(o.Backend, x, w, cos, sin, heads, eps, il)
}

func (o *opTimer) GroupNormSiLU(x, w, b compute.Tensor, groups int, eps float32) compute.Tensor {
	defer o.time("GroupNormSiLU", time.Now())
	return fused.GroupNormSiLU(o.Backend, x, w, b, groups, eps)
}

// split is one span of a forward: wall time and its op classes.
type split struct{ wall, gemm, gemv, attn time.Duration }

func (s split) other() time.Duration { return s.wall - s.gemm - s.gemv - s.attn }

// spans turns trace marks into spans named by the mark that ends them.
type spans struct {
	o     *opTimer
	last  time.Time
	lastS split
	got   map[string]split
}

func (s *spans) start() {
	s.last = time.Now()
	s.lastS = split{gemm: s.o.gemm, gemv: s.o.gemv, attn: s.o.attn}
	s.got = map[string]split{}
}

func (s *spans) mark(name string, _ compute.Tensor) {
	now := time.Now()
	s.got[name] = split{
		wall: now.Sub(s.last),
		gemm: s.o.gemm - s.lastS.gemm, gemv: s.o.gemv - s.lastS.gemv, attn: s.o.attn - s.lastS.attn,
	}
	s.last = now
	s.lastS = split{gemm: s.o.gemm, gemv: s.o.gemv, attn: s.o.attn}
}

func realArchEnv(b *testing.B, key string, def int) int {
	if v := os.Getenv(key); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want a non-negative integer", key, v)
		}
		return n
	}
	return def
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func BenchmarkRealArchDiT(b *testing.B) {
	if os.Getenv("ZIMAGE_BENCH_REAL_ARCH") != "1" {
		b.Skip("set ZIMAGE_BENCH_REAL_ARCH=1 (builds ~1.4 GB of random bf16 weights; minutes on 2 cores)")
	}
	cfg := weights.DefaultDiTConfig()
	cfg.NLayers = realArchEnv(b, "ZIMAGE_BENCH_LAYERS", 2)
	cfg.NRefinerLayers = realArchEnv(b, "ZIMAGE_BENCH_REFINERS", 1)
	capN := realArchEnv(b, "ZIMAGE_BENCH_CAP", 32)
	sizes := []int{256}
	if s := os.Getenv("ZIMAGE_BENCH_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 16 || n%16 != 0 {
				b.Fatalf("ZIMAGE_BENCH_SIZES: bad size %q (want multiples of 16)", f)
			}
			sizes = append(sizes, n)
		}
	}
	// ZIMAGE_BENCH_PRECISION=fp32,bf16,q8_0 times each size in these modes on
	// the same weights, one after the other: float32, bf16 compute
	// (cpu.Backend.SetBF16), and Q8_0 copies of the weights for the GEMMs
	// (MatMulQ80; attention in bf16); q4_k and q6_k run K-quant copies
	// through the backend's bf16-mode MatMul (the int8 path).
	precs := []string{"fp32"}
	if s := os.Getenv("ZIMAGE_BENCH_PRECISION"); s != "" {
		precs = strings.Split(s, ",")
		for _, p := range precs {
			if p != "fp32" && p != "bf16" && p != "q8_0" && p != "q4_k" && p != "q6_k" {
				b.Fatalf("ZIMAGE_BENCH_PRECISION: bad precision %q (want fp32, bf16, q8_0, q4_k or q6_k)", p)
			}
		}
	}
	if cfg.NLayers < 1 || cfg.NRefinerLayers < 1 {
		b.Fatal("need at least one main layer and one refiner layer")
	}

	t0 := time.Now()
	be := cpu.New()
	tm := &opTimer{Backend: be, cpu: be}
	m, err := dit.New(tm, cfg, randomWeights(synthetic.DiT(cfg)))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.Logf("built %d main + %d+%d refiner layers of the Turbo DiT (random bf16) in %v; %d threads, gemm kernel %s",
		cfg.NLayers, cfg.NRefinerLayers, cfg.NRefinerLayers, time.Since(t0).Round(time.Millisecond), be.Threads(), gemm.KernelName())

	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, 2))
	feats := make([]float32, capN*cfg.CapFeatDim)
	for i := range feats {
		feats[i] = float32(rng.NormFloat64())
	}
	sp := &spans{o: tm}
	sp.start()
	capt, err := m.PrepareCaption(ctx, feats, capN, sp.mark)
	if err != nil {
		b.Fatal(err)
	}
	defer capt.Free()
	var cref split
	for i := range cfg.NRefinerLayers {
		s := sp.got["context_refiner."+strconv.Itoa(i)]
		cref.wall += s.wall / time.Duration(cfg.NRefinerLayers)
	}
	lcp := capt.Lcp

	for _, size := range sizes {
		for _, prec := range precs {
			b.Run(fmt.Sprintf("%dx%d/%s", size, size, prec), func(b *testing.B) {
				be.SetBF16(prec != "fp32")
				tm.q8 = prec == "q8_0"
				tm.kq = map[string]weights.DType{"q4_k": weights.Q4_K, "q6_k": weights.Q6_K}[prec]
				defer func() { be.SetBF16(false); tm.q8 = false; tm.kq = 0 }()
				hl, wl := size/8, size/8
				x := make([]float32, cfg.InChannels*hl*wl)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				// Warm-up; in bf16 the timed forward uses pre-packed
				// weights, as a generation does from its packing step on.
				if prec == "bf16" {
					if err := be.Prepack(ctx, m.ProductWeights()...); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := m.Forward(ctx, x, hl, wl, 0.5, capt, nil); err != nil {
					b.Fatal(err)
				}
				var main, nref, edge split
				tm.ops = nil
				b.ResetTimer()
				cpu0 := cpuSeconds()
				for range b.N {
					sp.start()
					if _, err := m.Forward(ctx, x, hl, wl, 0.5, capt, sp.mark); err != nil {
						b.Fatal(err)
					}
					sp.mark("end", nil)
					for name, s := range sp.got {
						switch {
						case strings.HasPrefix(name, "layers.") && name != "layers.in.x":
							main = addSplit(main, s)
						case strings.HasPrefix(name, "noise_refiner.") && name != "noise_refiner.in.x":
							nref = addSplit(nref, s)
						default: // t_emb, x_embed, the refiner inputs, concat, final layer
							edge = addSplit(edge, s)
						}
					}
				}
				b.StopTimer()
				// CPU seconds per forward: steadier than wall time when other jobs
				// share the cores (compare precisions with both).
				b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "fwd-cpu-s")
				main = scaleSplit(main, b.N*cfg.NLayers)
				nref = scaleSplit(nref, b.N*cfg.NRefinerLayers)
				edge = scaleSplit(edge, b.N)

				real := weights.DefaultDiTConfig()
				step := 2*nref.wall + time.Duration(real.NLayers)*main.wall + edge.wall
				b.ReportMetric(ms(main.wall), "block-ms")
				b.ReportMetric(ms(main.gemm), "gemm-ms")
				b.ReportMetric(ms(main.attn), "attn-ms")
				b.ReportMetric(ms(main.gemv), "gemv-ms")
				b.ReportMetric(ms(main.other()), "other-ms")
				b.ReportMetric(ms(nref.wall), "nref-ms")
				b.ReportMetric(ms(cref.wall), "cref-ms")
				b.ReportMetric(ms(edge.wall), "edge-ms")
				b.ReportMetric(step.Seconds(), "step-s")
				b.ReportMetric((8*step + time.Duration(real.NRefinerLayers)*cref.wall).Seconds(), "8step-s")

				// Rates of this size, and the step they predict at other sizes.
				D, F := float64(cfg.Dim), float64(cfg.FFNDim())
				linPerTok := 2 * (4*D*D + 3*D*F)
				ni := float64((size / 16) * (size / 16))
				l := ni + float64(lcp)
				gemmRate := l * linPerTok / main.gemm.Seconds()
				attnRate := 4 * l * l * D / main.attn.Seconds()
				b.Logf("%d²: L = %.0f (%.0f image + %d caption rows); main block %.0f ms = GEMM %.0f (%.0f GFLOP/s) + attention %.0f (%.0f GFLOP/s) + GEMV %.1f + other %.0f; noise refiner %.0f ms; context refiner %.0f ms (once per generation); embed+final %.0f ms",
					size, l, ni, lcp, ms(main.wall), ms(main.gemm), gemmRate/1e9, ms(main.attn), attnRate/1e9, ms(main.gemv), ms(main.other()),
					ms(nref.wall), ms(cref.wall), ms(edge.wall))
				var parts []string
				for name, d := range tm.ops {
					parts = append(parts, fmt.Sprintf("%s %.0f", name, ms(d)/float64(b.N)))
				}
				sort.Strings(parts)
				b.Logf("  ms per forward in element-wise ops (all blocks): %s", strings.Join(parts, ", "))
				for _, s := range []int{256, 512, 1024} {
					ni2 := float64((s / 16) * (s / 16))
					l2 := ni2 + float64(lcp)
					blk := func(l2 float64) float64 {
						return l2*linPerTok/gemmRate + 4*l2*l2*D/attnRate + main.gemv.Seconds() + main.other().Seconds()*l2/l
					}
					st := float64(real.NLayers)*blk(l2) + 2*blk(ni2) + edge.Seconds()*ni2/ni
					flop := float64(real.NLayers)*(l2*linPerTok+4*l2*l2*D) + 2*(ni2*linPerTok+4*ni2*ni2*D)
					b.Logf("  extrapolated to %4d² (L = %4.0f): block %6.2f s, step %6.1f s (%.1f TFLOP), 8 steps %6.1f min",
						s, l2, blk(l2), st, flop/1e12, 8*st/60)
				}
			})
		}
	}
}

func addSplit(a, b split) split {
	return split{a.wall + b.wall, a.gemm + b.gemm, a.gemv + b.gemv, a.attn + b.attn}
}

func scaleSplit(a split, n int) split {
	d := time.Duration(max(n, 1))
	return split{a.wall / d, a.gemm / d, a.gemv / d, a.attn / d}
}

func (s split) Seconds() float64 { return s.wall.Seconds() }
