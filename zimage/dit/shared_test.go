package dit_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
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

// randomDiT fills a synthetic DiT tensor list with random bf16 values.
type randomDiT struct {
	src  *synthetic.Source
	mu   sync.Mutex
	seed uint64
}

func (s *randomDiT) Names() []string { return s.src.Names() }

func (s *randomDiT) Tensor(name string) (*weights.Tensor, bool) {
	t, ok := s.src.Tensor(name)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Data == nil {
		s.seed++
		r := rand.New(rand.NewPCG(s.seed, 7))
		v := make([]float32, t.NumElements())
		sc := float32(1)
		if len(t.Shape) == 2 {
			sc = float32(math.Sqrt(3 / float64(t.Shape[1])))
		}
		for i := range v {
			if len(t.Shape) == 1 && !strings.HasSuffix(name, ".bias") {
				v[i] = 1 + 0.1*float32(r.NormFloat64())
			} else {
				v[i] = sc * (2*r.Float32() - 1)
			}
		}
		t.Data = make([]byte, 2*len(v))
		weights.EncodeBF16(t.Data, v)
	}
	return t, true
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
	odd := weights.DefaultDiTConfig()
	odd.Dim, odd.NHeads, odd.NKVHeads = 144, 3, 3 // head_dim 48, FFN 384
	odd.AxesDims = []int{8, 20, 20}
	odd.NLayers, odd.NRefinerLayers, odd.CapFeatDim = 2, 1, 40
	models := []struct {
		name string
		cfg  weights.DiTConfig
		src  nn.Source
		hl   int
	}{
		{"tiny", tiny, tinySrc, 8},
		{"odd", odd, &randomDiT{src: synthetic.DiT(odd)}, 10},
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

// TestForwardLastLayerRows checks that a forward without a trace, whose last
// layer computes only the image rows past its keys and values, returns the
// same bits as a traced forward, which computes every row, in bf16 and
// float32, with caption and image pad tokens.
func TestForwardLastLayerRows(t *testing.T) {
	cfg := weights.DefaultDiTConfig()
	cfg.Dim, cfg.NHeads, cfg.NKVHeads = 144, 3, 3
	cfg.AxesDims = []int{8, 20, 20}
	cfg.NLayers, cfg.NRefinerLayers, cfg.CapFeatDim = 2, 1, 40
	src := &randomDiT{src: synthetic.DiT(cfg)}
	discard := nn.Trace(func(string, compute.Tensor) {})
	for _, bf16 := range []bool{true, false} {
		b := cpu.New(cpu.WithBF16(bf16))
		m, err := dit.New(b, cfg, src)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		n := 9
		feats := make([]float32, n*cfg.CapFeatDim)
		for i := range feats {
			feats[i] = float32(r.NormFloat64())
		}
		ctx := context.Background()
		capt, err := m.PrepareCaption(ctx, feats, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, hl := range []int{10, 16} { // 25 image tokens + 7 pads; 64, none
			x := make([]float32, cfg.InChannels*hl*hl)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			got, err := m.Forward(ctx, x, hl, hl, 0.3, capt, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Forward(ctx, x, hl, hl, 0.3, capt, discard)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("bf16 %v, %d²: element %d = %v, want %v", bf16, hl, i, got[i], want[i])
				}
			}
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
	cfg := weights.DefaultDiTConfig()
	cfg.Dim, cfg.NHeads, cfg.NKVHeads = 144, 3, 3
	cfg.AxesDims = []int{8, 20, 20}
	cfg.NLayers, cfg.NRefinerLayers, cfg.CapFeatDim = 2, 1, 40
	src := &randomDiT{src: synthetic.DiT(cfg)}
	ts := make([]float32, 12)
	for i := range ts {
		ts[i] = float32(i) / 12
	}
	for _, bf16 := range []bool{true, false} {
		b := cpu.New(cpu.WithBF16(bf16))
		m, err := dit.New(b, cfg, src)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(5, 6))
		n := 5
		feats := make([]float32, n*cfg.CapFeatDim)
		for i := range feats {
			feats[i] = float32(r.NormFloat64())
		}
		ctx := context.Background()
		capt, err := m.PrepareCaption(ctx, feats, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		const hl = 8
		x := make([]float32, cfg.InChannels*hl*hl)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		times := append(ts[:len(ts):len(ts)], 0.55) // the last one is not prepared
		want := make([][]float32, len(times))
		for i, tt := range times {
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
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[i][j]) {
						t.Fatalf("bf16 %v round %d, t=%v: element %d = %v, unprepared %v", bf16, round, tt, j, got[j], want[i][j])
					}
				}
			}
			m.ReleaseTimesteps()
		}
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		capt.Free()
		m.Close()
	}
}
