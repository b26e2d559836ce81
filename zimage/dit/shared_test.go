package dit_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// noSharer hides the backend's optional interfaces: the DiT then runs every
// product as its own MatMul.
type noSharer struct{ compute.Backend }

// randomDiT is a synthetic DiT tensor list with random bf16 values; norm
// gains spread around 1 so that a gain applied wrongly shows.
func randomDiT(cfg weights.DiTConfig) *synthetic.Random {
	return &synthetic.Random{Src: synthetic.DiT(cfg), Seed: 1, Scales: synthetic.Scales{Gain: 0.17, Bias: 1, Pad: 1}}
}

// TestForwardSharedProducts checks that whole forwards on a CPU backend with
// the shared-input products and pre-packed weights (packed after the first
// forward: the others run q/k/v and w1/w3 as one packed product each) equal
// forwards on a backend
// that packs nothing and multiplies weight by weight, bit for bit, in bf16
// and float32, on the tiny fixture and on a differently sized random model.
func TestForwardSharedProducts(t *testing.T) {
	tiny := weights.DefaultDiTConfig()
	tinySrc := fixture.TinyComponent(t, "transformer", &tiny)
	odd := oddConfig()
	models := []struct {
		name string
		cfg  weights.DiTConfig
		src  nn.Source
		hl   int
	}{
		{"tiny", tiny, tinySrc, 8},
		{"odd", odd, randomDiT(odd), 10},
	}
	for _, md := range models {
		for _, bf16 := range []bool{true, false} {
			name := md.name + "/fp32"
			if bf16 {
				name = md.name + "/bf16"
			}
			t.Run(name, func(t *testing.T) {
				fast := cpu.New(cpu.WithBF16(bf16))
				ref := cpu.New(cpu.WithBF16(bf16), cpu.WithPackBudget(0))
				mf, err := dit.New(fast, md.cfg, md.src)
				if err != nil {
					t.Fatal(err)
				}
				defer mf.Close()
				mr, err := dit.New(noSharer{ref}, md.cfg, md.src)
				if err != nil {
					t.Fatal(err)
				}
				defer mr.Close()
				r := rand.New(rand.NewPCG(1, 2))
				n := 7
				feats := make([]float32, n*md.cfg.CapFeatDim)
				for i := range feats {
					feats[i] = float32(r.NormFloat64())
				}
				x := make([]float32, md.cfg.InChannels*md.hl*md.hl)
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				ctx := context.Background()
				cf, err := mf.PrepareCaption(ctx, feats, n, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer cf.Free()
				cr, err := mr.PrepareCaption(ctx, feats, n, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer cr.Free()
				for step := range 4 {
					if step == 1 {
						if err := fast.Prepack(ctx, mf.ProductWeights()...); err != nil {
							t.Fatal(err)
						}
					}
					got, err := mf.Forward(ctx, x, md.hl, md.hl, 0.5, cf, nil)
					if err != nil {
						t.Fatal(err)
					}
					want, err := mr.Forward(ctx, x, md.hl, md.hl, 0.5, cr, nil)
					if err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("forward %d: element %d = %v, want %v", step, i, got[i], want[i])
						}
					}
				}
				if packed := fast.PackedBytes(); bf16 != (packed > 0) {
					t.Errorf("bf16 %v: %d bytes packed", bf16, packed)
				}
				if ref.PackedBytes() != 0 {
					t.Errorf("budget 0: %d bytes packed", ref.PackedBytes())
				}
			})
		}
	}
}

// oddConfig is a small DiT config of sizes the fixtures do not have: head
// dim 48, FFN 384, 2 main layers, 1 refiner of each kind.
func oddConfig() weights.DiTConfig {
	cfg := weights.DefaultDiTConfig()
	cfg.Dim, cfg.NHeads, cfg.NKVHeads = 144, 3, 3 // head_dim 48, FFN 384
	cfg.AxesDims = []int{8, 20, 20}
	cfg.NLayers, cfg.NRefinerLayers, cfg.CapFeatDim = 2, 1, 40
	return cfg
}

// oddModel binds a random-weight oddConfig DiT on a CPU backend and
// prepares a random caption of n tokens; the caller frees both.
func oddModel(t *testing.T, bf16 bool, r *rand.Rand, n int) (*dit.Model, *dit.Caption) {
	t.Helper()
	cfg := oddConfig()
	m, err := dit.New(cpu.New(cpu.WithBF16(bf16)), cfg, randomDiT(cfg))
	if err != nil {
		t.Fatal(err)
	}
	capt, err := m.PrepareCaption(context.Background(), randFloats(r, n*cfg.CapFeatDim), n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, capt
}

// randFloats returns n standard normal values.
func randFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// sameBits fails unless got and want hold the same float32 bits.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestForwardLastLayerRows checks that a forward without a trace, whose last
// layer computes only the image rows past its keys and values, returns the
// same bits as a traced forward, which computes every row, in bf16 and
// float32, with caption and image pad tokens.
func TestForwardLastLayerRows(t *testing.T) {
	discard := nn.Trace(func(string, compute.Tensor) {})
	ctx := context.Background()
	for _, bf16 := range []bool{true, false} {
		r := rand.New(rand.NewPCG(3, 4))
		m, capt := oddModel(t, bf16, r, 9)
		for _, hl := range []int{10, 16} { // 25 image tokens + 7 pads; 64, none
			x := randFloats(r, m.Config().InChannels*hl*hl)
			got, err := m.Forward(ctx, x, hl, hl, 0.3, capt, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Forward(ctx, x, hl, hl, 0.3, capt, discard)
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, fmt.Sprintf("bf16 %v, %d²", bf16, hl), got, want)
		}
		capt.Free()
		m.Close()
	}
}

// TestPrepareTimesteps checks that forwards at prepared DiT times (12 of
// them: two batches) equal unprepared forwards bit for bit, in bf16 and
// float32, that a time not prepared still works, and that releasing and
// re-preparing is clean.
func TestPrepareTimesteps(t *testing.T) {
	ts := make([]float32, 12)
	for i := range ts {
		ts[i] = float32(i) / 12
	}
	times := append(ts[:len(ts):len(ts)], 0.55) // the last one is not prepared
	ctx := context.Background()
	for _, bf16 := range []bool{true, false} {
		r := rand.New(rand.NewPCG(5, 6))
		m, capt := oddModel(t, bf16, r, 5)
		const hl = 8
		x := randFloats(r, m.Config().InChannels*hl*hl)
		want := make([][]float32, len(times))
		for i, tt := range times {
			var err error
			if want[i], err = m.Forward(ctx, x, hl, hl, tt, capt, nil); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 2 {
			if err := m.PrepareTimesteps(ts); err != nil {
				t.Fatal(err)
			}
			for i, tt := range times {
				got, err := m.Forward(ctx, x, hl, hl, tt, capt, nil)
				if err != nil {
					t.Fatal(err)
				}
				sameBits(t, fmt.Sprintf("bf16 %v round %d, t=%v", bf16, round, tt), got, want[i])
			}
			m.ReleaseTimesteps()
		}
		capt.Free()
		m.Close()
	}
}
