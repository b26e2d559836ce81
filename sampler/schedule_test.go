package sampler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/testdata"
	"github.com/zimage/zimage/weights"
)

func turboConfig() weights.SchedulerConfig { return weights.DefaultSchedulerConfig() }

func TestLinspaceFixtures(t *testing.T) {
	st := openFixture(t, "fixtures/scheduler.safetensors")
	for _, n := range []int{8, 9, 4, 12, 50} {
		end := float32(1 / float64(n))
		bitsEqual(t, fmt.Sprintf("steps%d/sigmas_in", n), linspace32(1, end, n, KernelAVX2), st.f32(t, fmt.Sprintf("steps%d/sigmas_in", n)))
		bitsEqual(t, fmt.Sprintf("steps%d/sigmas_in_default_kernel", n), linspace32(1, end, n, KernelScalar), st.f32(t, fmt.Sprintf("steps%d/sigmas_in_default_kernel", n)))
	}
}

func TestScheduleFixtures(t *testing.T) {
	st := openFixture(t, "fixtures/scheduler.safetensors")
	for _, n := range []int{8, 9, 4, 12, 50} {
		s, err := NewSchedule(turboConfig(), n, 16)
		if err != nil {
			t.Fatal(err)
		}
		if s.Steps() != n || len(s.Sigmas) != n+1 || s.Sigmas[n] != 0 {
			t.Fatalf("steps %d: got %d timesteps, %d sigmas ending in %v", n, s.Steps(), len(s.Sigmas), s.Sigmas[len(s.Sigmas)-1])
		}
		p := fmt.Sprintf("steps%d/", n)
		bitsEqual(t, p+"sigmas", s.Sigmas, st.f32(t, p+"sigmas"))
		bitsEqual(t, p+"timesteps", s.Timesteps, st.f32(t, p+"timesteps"))
		bitsEqual(t, p+"dit_t", s.DiTTime, st.f32(t, p+"dit_t"))
	}
}

func TestScheduleSpecTable(t *testing.T) {
	// Spec §3.4, Turbo N = 8: σ bit patterns, timesteps, DiT inputs.
	s, err := NewSchedule(turboConfig(), 8, 4096)
	if err != nil {
		t.Fatal(err)
	}
	sigmaHex := []uint32{0x3f800000, 0x3f745d17, 0x3f666666, 0x3f555555, 0x3f400000, 0x3f249249, 0x3f000000, 0x3e99999a, 0}
	for i, h := range sigmaHex {
		if got := math.Float32bits(s.Sigmas[i]); got != h {
			t.Errorf("σ_%d = %#08x, want %#08x", i, got, h)
		}
	}
	bitsEqual(t, "timesteps", s.Timesteps, f32s(t, "1000, 954.5454, 900, 833.3333, 750, 642.8571, 500, 300"))
	bitsEqual(t, "dit_t", s.DiTTime, f32s(t, "0, 0.04545459, 0.1, 0.16666669, 0.25, 0.3571429, 0.5, 0.7"))
	// The table prints dt = σ_{i+1} - σ_i to 8 significant digits only.
	dt := []float64{-0.04545456, -0.05454546, -0.06666666, -0.08333331, -0.10714287, -0.14285713, -0.19999999, -0.30000001}
	for i, want := range dt {
		if got := s.Sigmas[i+1] - s.Sigmas[i]; math.Abs(float64(got)-want) > 5e-9 {
			t.Errorf("dt_%d = %v, want %v", i, got, want)
		}
	}
}

// scheduler.json lists, for n = 1..300, where torch's AVX2 and default
// linspace kernels disagree; the two emulations must disagree at exactly
// those n (a check of the vector blocking beyond the five stored schedules).
func TestLinspaceKernelsDifferAt(t *testing.T) {
	raw, err := os.ReadFile(testdata.Path(t, "fixtures/scheduler.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Linspace struct {
			CheckedN string `json:"checked_n"`
			Differ   []int  `json:"n_where_native_and_default_kernels_differ"`
		} `json:"linspace_emulation"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	if j.Linspace.CheckedN != "1..300" || len(j.Linspace.Differ) == 0 {
		t.Fatalf("scheduler.json linspace_emulation: unexpected checked_n %q / %d entries", j.Linspace.CheckedN, len(j.Linspace.Differ))
	}
	var got []int
	for n := 1; n <= 300; n++ {
		end := float32(1 / float64(n))
		a, b := linspace32(1, end, n, KernelAVX2), linspace32(1, end, n, KernelScalar)
		for i := range a {
			if a[i] != b[i] {
				got = append(got, n)
				break
			}
		}
	}
	if !slices.Equal(got, j.Linspace.Differ) {
		t.Errorf("kernels differ at n = %v\nwant %v", got, j.Linspace.Differ)
	}
}
