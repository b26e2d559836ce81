package sampler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

func TestStepFixture(t *testing.T) {
	st := openFixture(t, "fixtures/scheduler.safetensors")
	s, err := NewSchedule(turboConfig(), 8, 24)
	if err != nil {
		t.Fatal(err)
	}
	out := st.f32(t, "step/transformer_out")
	np := make([]float32, len(out))
	NoisePred(np, out, nil, 0, 0)
	bitsEqual(t, "noise_pred", np, st.f32(t, "step/noise_pred"))

	x := st.f32(t, "step/sample")
	Step(x, np, s.Sigmas[0], s.Sigmas[1])
	bitsEqual(t, "prev_sample_0", x, st.f32(t, "step/prev_sample_0"))
	Step(x, np, s.Sigmas[1], s.Sigmas[2])
	bitsEqual(t, "prev_sample_1", x, st.f32(t, "step/prev_sample_1"))
}

type e2eCase struct {
	Name        string  `json:"name"`
	Height      int     `json:"height"`
	Width       int     `json:"width"`
	Seed        uint64  `json:"seed"`
	Steps       int     `json:"num_inference_steps"`
	Guidance    float32 `json:"guidance_scale"`
	LatentShape []int   `json:"latent_shape"`
	ImageTokens int     `json:"image_tokens"`
}

// TestE2ESampling replays the sampling loop of every whole-pipeline fixture
// with the stored DiT outputs: noise from the seed, the schedule, CFG and
// every Euler step must reproduce the stored latents bit for bit.
func TestE2ESampling(t *testing.T) {
	raw, err := os.ReadFile(fixturefs.Path(t, "fixtures/e2e/e2e.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Cases []e2eCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Cases) == 0 {
		t.Fatal("e2e.json: no cases")
	}
	for _, c := range j.Cases {
		t.Run(c.Name, func(t *testing.T) {
			st := openFixture(t, "fixtures/e2e/"+c.Name+".safetensors")
			// Latent [1, 16, H/8, W/8]; image tokens (H/16)·(W/16).
			hl, wl := c.Height/8, c.Width/8
			if want := []int{1, 16, hl, wl}; fmt.Sprint(c.LatentShape) != fmt.Sprint(want) {
				t.Fatalf("latent_shape %v, want %v", c.LatentShape, want)
			}
			seqLen := (hl / 2) * (wl / 2)
			if seqLen != c.ImageTokens {
				t.Fatalf("image tokens %d, want %d", seqLen, c.ImageTokens)
			}

			x := Randn(c.Seed, 16*hl*wl)
			bitsEqual(t, "noise", x, st.f32(t, "noise"))

			wantSteps := 8
			if c.Guidance > 0 {
				wantSteps = 4
			}
			if c.Steps != wantSteps {
				t.Fatalf("num_inference_steps %d, want %d", c.Steps, wantSteps)
			}
			s, err := NewSchedule(turboConfig(), c.Steps, seqLen)
			if err != nil {
				t.Fatal(err)
			}
			bitsEqual(t, "sigmas", s.Sigmas, st.f32(t, "sigmas"))
			bitsEqual(t, "timesteps", s.Timesteps, st.f32(t, "timesteps"))
			bitsEqual(t, "dit_t", s.DiTTime, st.f32(t, "dit_t"))

			np := make([]float32, len(x))
			for i := 0; i < s.Steps(); i++ {
				pos := st.f32(t, fmt.Sprintf("transformer_out.%d", i))
				var neg []float32
				if c.Guidance > 0 {
					neg = st.f32(t, fmt.Sprintf("transformer_out_negative.%d", i))
				}
				NoisePred(np, pos, neg, c.Guidance, 0)
				Step(x, np, s.Sigmas[i], s.Sigmas[i+1])
				bitsEqual(t, fmt.Sprintf("latents.%d", i), x, st.f32(t, fmt.Sprintf("latents.%d", i)))
			}
			bitsEqual(t, "final_latents", x, st.f32(t, "final_latents"))
		})
	}
}

func TestNoisePred(t *testing.T) {
	pos := []float32{1, -2, 0.5, 3}
	neg := []float32{0.5, -1, 0.5, -1}
	dst := make([]float32, 4)

	NoisePred(dst, pos, nil, 4, 0)
	bitsEqual(t, "no negative", dst, []float32{-1, 2, -0.5, -3})
	NoisePred(dst, pos, neg, 0, 0)
	bitsEqual(t, "guidance 0", dst, []float32{-1, 2, -0.5, -3})

	// pos + 4(pos - neg): 3, -6, 0.5, 19.
	NoisePred(dst, pos, neg, 4, 0)
	bitsEqual(t, "guidance 4", dst, []float32{-3, 6, -0.5, -19})

	// Aliasing dst and pos gives the same result.
	p2 := append([]float32(nil), pos...)
	NoisePred(p2, p2, neg, 4, 0)
	bitsEqual(t, "aliased", p2, []float32{-3, 6, -0.5, -19})

	// cfg normalisation: ‖pos‖ = √14.25, ‖pred‖ = √406.25; a limit of 2·‖pos‖
	// rescales pred to that norm, a generous limit leaves it alone.
	NoisePred(dst, pos, neg, 4, 100)
	bitsEqual(t, "cfgNorm 100", dst, []float32{-3, 6, -0.5, -19})
	NoisePred(dst, pos, neg, 4, 2)
	wantNorm := 2 * math.Sqrt(14.25)
	if got := float64(norm32(dst)); math.Abs(got-wantNorm) > 1e-5 {
		t.Errorf("renormalised norm %v, want %v", got, wantNorm)
	}
	k := wantNorm / math.Sqrt(406.25)
	for i, want := range []float64{-3 * k, 6 * k, -0.5 * k, -19 * k} {
		if math.Abs(float64(dst[i])-want) > 1e-6 {
			t.Errorf("renormalised[%d] = %v, want %v", i, dst[i], want)
		}
	}
	p2 = append([]float32(nil), pos...)
	NoisePred(p2, p2, neg, 4, 2)
	bitsEqual(t, "aliased cfgNorm", p2, dst)
}
