package sampler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
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
	raw, err := os.ReadFile(fixturefs.Path(t, "fixtures/scheduler.json"))
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

func TestScheduleDynamicShift(t *testing.T) {
	// Hand-computed in float64 from mu = calculate_shift(L) and
	// σ = e^mu/(e^mu + 1/s - 1) (exponential) or mu/(mu + 1/s - 1) (linear),
	// s = linspace(1, 1/4, 4); float32 evaluation may differ by a few ulps.
	cases := []struct {
		seqLen int
		kind   string
		want   []float64
	}{
		{4096, "exponential", []float64{1, 0.9045307667386396, 0.7595109169491111, 0.5128441015091338}}, // mu = 1.15
		{256, "exponential", []float64{1, 0.8318243439635805, 0.6224593312018546, 0.3546612443924434}},  // mu = 0.5
		{1024, "", []float64{1, 0.8492348306829303, 0.6524894621927445, 0.38494474881746926}},           // mu = 0.63, default type
		{4096, "linear", []float64{1, 0.7752808988764044, 0.5348837209302325, 0.2771084337349397}},
		{256, "linear", []float64{1, 0.6, 1.0 / 3, 1.0 / 7}},
	}
	for _, c := range cases {
		cfg := turboConfig()
		cfg.UseDynamicShifting = true
		cfg.TimeShiftType = c.kind
		s, err := NewSchedule(cfg, 4, c.seqLen)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range c.want {
			if math.Abs(float64(s.Sigmas[i])-w) > 3e-7 {
				t.Errorf("L=%d %s: σ_%d = %v, want %v", c.seqLen, c.kind, i, s.Sigmas[i], w)
			}
			if math.Abs(float64(s.Timesteps[i])-1000*w) > 3e-4 {
				t.Errorf("L=%d %s: timestep_%d = %v, want %v", c.seqLen, c.kind, i, s.Timesteps[i], 1000*w)
			}
		}
		if s.Sigmas[4] != 0 {
			t.Errorf("last sigma %v", s.Sigmas[4])
		}
	}

	// Static shift ignores the sequence length (mu unused), like diffusers.
	a, _ := NewSchedule(turboConfig(), 8, 16)
	b, _ := NewSchedule(turboConfig(), 8, 4096)
	bitsEqual(t, "static shift, seq len 16 vs 4096", a.Sigmas, b.Sigmas)
}

func TestScheduleShiftTerminal(t *testing.T) {
	// Shift 3, N = 4: σ = 1, 0.9, 0.75, 0.5; stretching 1-σ so the last σ is
	// 0.1 multiplies 1-σ by 0.9/0.5 = 1.8.
	cfg := turboConfig()
	term := 0.1
	cfg.ShiftTerminal = &term
	s, err := NewSchedule(cfg, 4, 16)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []float64{1, 0.82, 0.55, 0.1, 0} {
		if math.Abs(float64(s.Sigmas[i])-w) > 2e-7 {
			t.Errorf("σ_%d = %v, want %v", i, s.Sigmas[i], w)
		}
	}
	// A zero shift_terminal means unset, as in diffusers (`if shift_terminal:`).
	zero := 0.0
	cfg.ShiftTerminal = &zero
	s, _ = NewSchedule(cfg, 8, 16)
	plain, _ := NewSchedule(turboConfig(), 8, 16)
	bitsEqual(t, "shift_terminal 0", s.Sigmas, plain.Sigmas)
}

func TestScheduleOneStep(t *testing.T) {
	s, err := NewSchedule(turboConfig(), 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	bitsEqual(t, "sigmas", s.Sigmas, []float32{1, 0})
	bitsEqual(t, "timesteps", s.Timesteps, []float32{1000})
	bitsEqual(t, "dit_t", s.DiTTime, []float32{0})
}

func TestScheduleErrors(t *testing.T) {
	term := 1.0
	cases := []struct {
		field string
		mod   func(*weights.SchedulerConfig)
		steps int
		seq   int
	}{
		{"steps", func(*weights.SchedulerConfig) {}, 0, 16},
		{"use_karras_sigmas", func(c *weights.SchedulerConfig) { c.UseKarrasSigmas = true }, 8, 16},
		{"use_exponential_sigmas", func(c *weights.SchedulerConfig) { c.UseExponential = true }, 8, 16},
		{"use_beta_sigmas", func(c *weights.SchedulerConfig) { c.UseBetaSigmas = true }, 8, 16},
		{"stochastic_sampling", func(c *weights.SchedulerConfig) { c.StochasticSampling = true }, 8, 16},
		{"invert_sigmas", func(c *weights.SchedulerConfig) { c.InvertSigmas = true }, 8, 16},
		{"num_train_timesteps", func(c *weights.SchedulerConfig) { c.NumTrainTimesteps = 0 }, 8, 16},
		{"shift", func(c *weights.SchedulerConfig) { c.Shift = 0 }, 8, 16},
		{"shift_terminal", func(c *weights.SchedulerConfig) { c.ShiftTerminal = &term }, 8, 16},
		{"time_shift_type", func(c *weights.SchedulerConfig) { c.UseDynamicShifting = true; c.TimeShiftType = "cosine" }, 8, 16},
		{"max_image_seq_len", func(c *weights.SchedulerConfig) { c.UseDynamicShifting = true; c.MaxImageSeqLen = c.BaseImageSeqLen }, 8, 16},
		{"imageSeqLen", func(c *weights.SchedulerConfig) { c.UseDynamicShifting = true }, 8, 0},
	}
	for _, c := range cases {
		cfg := turboConfig()
		c.mod(&cfg)
		_, err := NewSchedule(cfg, c.steps, c.seq)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field {
			t.Errorf("%s: got error %v, want *sampler.Error for that field", c.field, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "sampler: "+c.field) {
			t.Errorf("%s: message %q", c.field, err)
		}
	}
}

func TestScheduleNonIntegerShift(t *testing.T) {
	// numpy evaluates shift·s/(1 + (shift-1)·s) with shift-1 taken in double
	// before the cast to float32; for these shifts that differs from
	// float32(shift)-1. Expected bits from a float32-rounding emulation of
	// numpy's ops (Python struct round trips), N = 8.
	cases := map[float64][]uint32{
		1.3: {0x3f800000, 0x3f66a748, 0x3f4bc14e, 0x3f2f286c, 0x3f10b216, 0x3ee05c0c, 0x3e9aca6a, 0x3e2062b2},
		2.9: {0x3f800000, 0x3f73fb33, 0x3f659bb8, 0x3f541d42, 0x3f3e5be6, 0x3f2291c2, 0x3efba939, 0x3e95fad5},
		6.0: {0x3f800000, 0x3f7a0be8, 0x3f7286bd, 0x3f68ba2f, 0x3f5b6db7, 0x3f48590b, 0x3f2aaaab, 0x3eec4ec5},
	}
	for shift, want := range cases {
		cfg := turboConfig()
		cfg.Shift = shift
		s, err := NewSchedule(cfg, 8, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range want {
			if got := math.Float32bits(s.Sigmas[i]); got != w {
				t.Errorf("shift %v: σ_%d = %#08x, want %#08x", shift, i, got, w)
			}
		}
	}
}
