package zimage

import (
	"fmt"
	"testing"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// quantLister presents a synthetic checkpoint with its tensors typed as a
// GGUF conversion to qt would store them (no data).
type quantLister struct {
	src *synthetic.Source
	qt  weights.DType
}

func (q quantLister) Names() []string { return q.src.Names() }

func (q quantLister) Tensor(name string) (*weights.Tensor, bool) {
	t, ok := q.src.Tensor(name)
	if !ok || q.qt == weights.BF16 {
		return t, ok
	}
	c := *t
	c.DType = weights.GGUFTensorType(name, t, q.qt)
	return &c, true
}

// quantScratch is the bf16 buffer a backend keeping quantized weights needs
// to expand the largest weight before its GEMM (the DiT's FFN w1/w3,
// 10240×3840).
const quantScratch = 10240 * 3840 * 2

// TestPlanQuantized: with weights kept quantized on the device, 1024²
// fits an 8 GB card with a Q4_K DiT and a streamed Q4_K or Q8_0 text
// encoder, and a 12 GB card with Q8_0. Logs the predicted peaks for the
// README table.
func TestPlanQuantized(t *testing.T) {
	te, d, v := weights.DefaultQwen3Config(), weights.DefaultDiTConfig(), weights.DefaultVAEConfig()
	cases := []struct {
		gbs       float64
		dit, text weights.DType
		fits      bool
		keepDiT   bool
	}{
		{8, weights.Q4_K, weights.Q4_K, true, true},
		{8, weights.Q4_K, weights.Q8_0, true, true},
		{8, weights.Q8_0, weights.Q8_0, true, false}, // fits only by re-uploading the DiT every request
		{12, weights.Q8_0, weights.Q8_0, true, true},
		{12, weights.Q8_0, weights.Q4_K, true, true},
		{16, weights.Q8_0, weights.Q8_0, true, true},
		{16, weights.Q4_K, weights.Q4_K, true, true},
		{12, weights.BF16, weights.BF16, false, false}, // the unquantized model (see TestPlanTable)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%gGB/dit-%s/te-%s", c.gbs, c.dit, c.text), func(t *testing.T) {
			f := MeasureQuantFootprint(quantLister{synthetic.TextEncoder(te), c.text}, quantLister{synthetic.DiT(d), c.dit}, synthetic.VAE(v), te, d, v, 2)
			in := PlanInput{Free: card(c.gbs), Overhead: 160 << 20, Scratch: CUDAScratch + quantScratch, Model: f,
				Width: 1024, Height: 1024, Tokens: 128}
			cold, err := PlanResidency(in)
			if !c.fits {
				if err == nil {
					t.Errorf("fits (%v), want a *MemoryError", cold)
				}
				return
			}
			if err != nil {
				t.Fatalf("DiT %s (%s), text encoder %s (%s): %v", c.dit, gb(f.DiT), c.text, gb(f.TextEncoder), err)
			}
			in.Free -= cold.Keep.bytes(&f)
			in.Resident = cold.Keep
			warm, err := PlanResidency(in)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%g GB, DiT %s %s, text encoder %s %s: cold %v; warm %v", c.gbs, c.dit, gb(f.DiT), c.text, gb(f.TextEncoder), cold, warm)
			if warm.Keep.DiT != c.keepDiT {
				t.Errorf("DiT kept resident: %v, want %v (%v)", warm.Keep.DiT, c.keepDiT, warm)
			}
			if warm.Peak > in.Free+in.Resident.bytes(&f)+in.Overhead+1 {
				t.Errorf("peak %s over the card", gb(warm.Peak))
			}
		})
	}
	// Stored sizes: Q4_K ≈ 4.5 bits and Q8_0 8.5 bits per DiT weight.
	f4 := MeasureQuantFootprint(synthetic.TextEncoder(te), quantLister{synthetic.DiT(d), weights.Q4_K}, synthetic.VAE(v), te, d, v, 2)
	f8 := MeasureQuantFootprint(synthetic.TextEncoder(te), quantLister{synthetic.DiT(d), weights.Q8_0}, synthetic.VAE(v), te, d, v, 2)
	if g := float64(f4.DiT) / 1e9; g < 3.3 || g > 3.8 {
		t.Errorf("Q4_K DiT %.2f GB", g)
	}
	if g := float64(f8.DiT) / 1e9; g < 6.4 || g > 6.8 {
		t.Errorf("Q8_0 DiT %.2f GB", g)
	}
}

type heldScratch struct {
	compute.Backend
	n uint64
}

func (h heldScratch) QuantScratchBytes() uint64 { return h.n }

// TestQuantScratch: the footprint states the dequantization scratch (the
// largest quantized weight expanded, the DiT's FFN weight), planRequest
// adds it to the plan's scratch and takes a scratch the backend already
// holds out of the overhead.
func TestQuantScratch(t *testing.T) {
	te, d, v := weights.DefaultQwen3Config(), weights.DefaultDiTConfig(), weights.DefaultVAEConfig()
	f := MeasureQuantFootprint(quantLister{synthetic.TextEncoder(te), weights.Q8_0}, quantLister{synthetic.DiT(d), weights.Q4_K}, synthetic.VAE(v), te, d, v, 2)
	if f.QuantScratch != quantScratch {
		t.Errorf("QuantScratch %d, want %d", f.QuantScratch, quantScratch)
	}
	if g := MeasureFootprint(synthetic.TextEncoder(te), synthetic.DiT(d), synthetic.VAE(v), te, d, v, 2); g.QuantScratch != 0 {
		t.Errorf("unquantized model: QuantScratch %d", g.QuantScratch)
	}
	s, o := addQuantScratch(heldScratch{n: 1000}, &f, CUDAScratch, 5000)
	if s != CUDAScratch+quantScratch || o != 4000 {
		t.Errorf("addQuantScratch = %d, %d", s, o)
	}
	s, o = addQuantScratch(heldScratch{}, &Footprint{}, CUDAScratch, 5000)
	if s != CUDAScratch || o != 5000 {
		t.Errorf("no quantized weights: %d, %d", s, o)
	}
}
