package zimage

import (
	"errors"
	"fmt"
	"testing"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
)

const gib = 1 << 30

// turboFootprint is the real model's footprint in bf16, from the tensor
// shapes of the full-size checkpoint (the same headers Load reads).
func turboFootprint() Footprint {
	te, d, v := weights.DefaultQwen3Config(), weights.DefaultDiTConfig(), weights.DefaultVAEConfig()
	return MeasureFootprint(synthetic.TextEncoder(te), synthetic.DiT(d), synthetic.VAE(v), te, d, v, 2)
}

func TestTurboFootprint(t *testing.T) {
	f := turboFootprint()
	// Spec §6.4: DiT 12.31 GB, text-encoder layers 0..34 7.07 GB, VAE decoder 0.099 GB.
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"DiT", float64(f.DiT) / 1e9, 12.31},
		{"text encoder", float64(f.TextEncoder) / 1e9, 7.07},
		{"text layer", float64(f.TextLayer) / 1e9, 7.07 / 35},
		{"VAE", float64(f.VAE) / 1e9, 0.099},
	} {
		if d := c.got - c.want; d > 0.01 || d < -0.01 {
			t.Errorf("%s: %.3f GB, want %.3f GB", c.what, c.got, c.want)
		}
	}
	// Spec §6.5: DiT activations < 0.4 GB at 1024² (bf16, ~100 tokens).
	if a := DiTActivation(f.DiTC, 8, 1024, 1024, 100, false, 2); a > 0.4e9 || a < 0.3e9 {
		t.Errorf("DiT activations at 1024²: %s", gb(a))
	}
}

// card returns the free memory of a card of n GiB once the driver context
// and the backend's own buffers are set up (≈0.6 GB).
func card(n float64) uint64 { return uint64(n*gib) - 600<<20 }

// TestPlanTable plans 1024² … on every card size from a cold start and in
// the steady state (DiT and VAE resident from the previous request).
func TestPlanTable(t *testing.T) {
	f := turboFootprint()
	type want struct {
		err     bool
		keepTE  bool
		te      TEMode // steady state (DiT and VAE resident)
		tiled   bool
		keepDiT bool
	}
	cases := []struct {
		gbs  float64
		size int
		want want
	}{
		{8, 512, want{err: true}}, {8, 1024, want{err: true}}, {8, 2048, want{err: true}},
		{12, 512, want{err: true}}, {12, 1024, want{err: true}}, {12, 2048, want{err: true}},
		{16, 512, want{te: TEStream, keepDiT: true}},
		{16, 1024, want{te: TEStream, keepDiT: true}},
		{16, 2048, want{te: TEStream, keepDiT: true, tiled: true}},
		{24, 512, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{24, 1024, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{24, 2048, want{te: TELoad, keepDiT: true}},
		{40, 512, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{40, 1024, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{40, 2048, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{80, 1024, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{80, 2048, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{141, 512, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{141, 1024, want{keepTE: true, te: TEKeep, keepDiT: true}},
		{141, 2048, want{keepTE: true, te: TEKeep, keepDiT: true}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%gGB/%d", c.gbs, c.size), func(t *testing.T) {
			in := PlanInput{Free: card(c.gbs), Overhead: 160 << 20, Scratch: CUDAScratch, Model: f,
				Width: c.size, Height: c.size, Tokens: 128}
			cold, err := PlanResidency(in)
			if c.want.err {
				var me *MemoryError
				if !errors.As(err, &me) || me.Need <= me.Have {
					t.Fatalf("want a *MemoryError with need > have, got %v (%+v)", err, cold)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Steady state: what the cold request kept is resident.
			in.Free -= cold.Keep.bytes(&f)
			in.Resident = cold.Keep
			warm, err := PlanResidency(in)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cold: %v", cold)
			t.Logf("warm: %v", warm)
			if warm.Keep != cold.Keep || warm.VAETile != cold.VAETile || warm.Release != (Parts{}) {
				t.Errorf("the steady-state plan changed: %+v", warm)
			}
			if warm.Keep.TextEncoder != c.want.keepTE || warm.Keep.DiT != c.want.keepDiT || !warm.Keep.VAE ||
				warm.TextEncoder != c.want.te || (warm.VAETile > 0) != c.want.tiled {
				t.Errorf("got %v, want %+v", warm, c.want)
			}
			// Cold, nothing is resident beside the text encoder: it loads whole.
			if !c.want.keepTE && cold.TextEncoder != TELoad {
				t.Errorf("cold start: text encoder %v, want loaded whole", cold.TextEncoder)
			}
			for _, p := range []Plan{cold, warm} {
				if p.Peak > p.Capacity || p.Capacity > in.Free+in.Resident.bytes(&f)+in.Overhead+1 {
					t.Errorf("peak %s, capacity %s", gb(p.Peak), gb(p.Capacity))
				}
			}
			// The goal: 1024² on a 16 GB card under 15.5 GB.
			if c.gbs == 16 && c.size <= 1024 && (cold.Peak > 15.5e9 || warm.Peak > 15.5e9) {
				t.Errorf("peak %s / %s over 15.5 GB", gb(cold.Peak), gb(warm.Peak))
			}
			if c.gbs >= 80 && (warm.Transfer != 0 || warm.VAETile != 0) {
				t.Errorf("80+ GB needs no planning: %v", warm)
			}
		})
	}
}

func TestPlanBudget(t *testing.T) {
	f := turboFootprint()
	base := PlanInput{Free: 140 * gib, Overhead: 160 << 20, Scratch: CUDAScratch, Model: f, Width: 1024, Height: 1024, Tokens: 128}

	// A 16 GB budget on a big card plans like a 16 GB card.
	in := base
	in.Budget = 16e9
	in.Resident = Parts{DiT: true, VAE: true}
	p, err := PlanResidency(in)
	if err != nil {
		t.Fatal(err)
	}
	if p.TextEncoder != TEStream || !p.Keep.DiT || p.Peak > 16e9 || p.Capacity > 16e9 {
		t.Errorf("16 GB budget: %v", p)
	}

	// Resident parts that no longer fit are released first.
	in = base
	in.Budget = 15e9
	in.Resident = Parts{TextEncoder: true, DiT: true, VAE: true}
	if p, err = PlanResidency(in); err != nil {
		t.Fatal(err)
	}
	if !p.Release.TextEncoder || p.Release.DiT || p.Keep.TextEncoder {
		t.Errorf("15 GB budget with everything resident: %v", p)
	}

	// A budget under the backend's own buffers, or under the DiT: clear errors.
	for _, budget := range []uint64{100 << 20, 10e9} {
		in = base
		in.Budget = budget
		var me *MemoryError
		if _, err := PlanResidency(in); !errors.As(err, &me) {
			t.Errorf("budget %s: got %v", gb(budget), err)
		} else {
			t.Log(err)
		}
	}

	// More tokens and CFG cost memory, never less.
	in = base
	a, _ := PlanResidency(in)
	in.Tokens, in.CFG = 512, true
	b, _ := PlanResidency(in)
	if b.Peak < a.Peak {
		t.Errorf("CFG with 512 tokens predicts less: %s < %s", gb(b.Peak), gb(a.Peak))
	}
}

// TestPlanHost: the CPU backend maps weights; only a budget constrains the
// activations, and the VAE tiles when its full decode would not fit.
func TestPlanHost(t *testing.T) {
	f := turboFootprint()
	f.Elem = 4
	in := PlanInput{Host: true, Model: f, Width: 2048, Height: 2048, Tokens: 64}
	p, err := PlanResidency(in)
	if err != nil {
		t.Fatal(err)
	}
	if p.TextEncoder != TELoad || !p.Keep.DiT || !p.Keep.VAE || p.VAETile != 0 || p.Transfer != 0 {
		t.Errorf("host, no budget: %v", p)
	}
	t.Log(p)
	in.Budget = 4e9
	if p, err = PlanResidency(in); err != nil {
		t.Fatal(err)
	}
	if p.VAETile == 0 || p.Peak > 4e9 {
		t.Errorf("host, 4 GB budget at 2048²: %v", p)
	}
	t.Log(p)
	in.Budget = 1e9 // under the DiT's activations at 2048²
	var me *MemoryError
	if _, err := PlanResidency(in); !errors.As(err, &me) {
		t.Errorf("host, 1 GB budget: got %v", err)
	}
}

// TestPlanBadInput: bad inputs are errors, never panics.
func TestPlanBadInput(t *testing.T) {
	if _, err := PlanResidency(PlanInput{}); err == nil {
		t.Error("zero input: want an error")
	}
	in := PlanInput{Free: 100 * gib, Model: turboFootprint(), Width: 0, Height: 1024}
	if _, err := PlanResidency(in); err == nil {
		t.Error("zero width: want an error")
	}
	if n := DiTActivation(weights.DiTConfig{}, 8, 64, 64, 10, false, 2); n != 0 {
		t.Errorf("empty DiT config: %d", n)
	}
}
