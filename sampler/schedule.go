package sampler

import (
	"math"

	"github.com/zimage/zimage/weights"
)

// Schedule is the sigma schedule of one generation, as the reference
// pipeline (diffusers ZImagePipeline + FlowMatchEulerDiscreteScheduler)
// computes it in float32.
type Schedule struct {
	Sigmas    []float32 // N+1 noise levels, from 1 down; the last is 0
	Timesteps []float32 // N, sigma·num_train_timesteps
	DiTTime   []float32 // N, (1000 - timestep)/1000 = what the DiT receives (≈ 1 - sigma)
}

// Steps is the number of Euler updates (N).
func (s Schedule) Steps() int { return len(s.Timesteps) }

// NewSchedule builds the schedule for steps updates the way ZImagePipeline
// does: sigmas_in = torch.linspace(1, 1/steps, steps) in float32, then the
// static shift σ = shift·s/(1 + (shift-1)·s) (or, when the config enables
// dynamic shifting, the resolution-dependent time shift with
// mu = calculate_shift(imageSeqLen)), the optional shift_terminal stretch,
// timesteps = σ·num_train_timesteps, and a final σ = 0.
//
// imageSeqLen is the number of image tokens, (H/16)·(W/16); like diffusers it
// only matters with use_dynamic_shifting. Settings this sampler does not
// implement (karras/exponential/beta sigmas, stochastic sampling, inverted
// sigmas, an unknown time_shift_type) are an *Error naming the config key.
func NewSchedule(cfg weights.SchedulerConfig, steps, imageSeqLen int) (Schedule, error) {
	if steps < 1 {
		return Schedule{}, &Error{Field: "steps", Value: steps, Reason: "must be at least 1"}
	}
	if err := checkConfig(cfg); err != nil {
		return Schedule{}, err
	}

	// get_default_z_image_sigmas(steps); the 1/steps end point is a Python
	// double rounded to float32 by torch.
	sigmas := linspace32(1, float32(1/float64(steps)), steps, KernelAVX2)

	if cfg.UseDynamicShifting {
		if imageSeqLen < 1 {
			return Schedule{}, &Error{Field: "imageSeqLen", Value: imageSeqLen, Reason: "must be at least 1 with use_dynamic_shifting"}
		}
		mu := calculateShift(cfg, imageSeqLen)
		timeShift(cfg.TimeShiftType, mu, sigmas)
	} else {
		// numpy: shift*s/(1 + (shift-1)*s) on a float32 array with Python
		// floats shift and shift-1 (computed in double), which numpy casts to
		// float32; every op rounds to float32.
		shift, shiftM1 := float32(cfg.Shift), float32(cfg.Shift-1)
		for i, s := range sigmas {
			sigmas[i] = float32(shift*s) / (1 + float32(shiftM1*s))
		}
	}
	if cfg.ShiftTerminal != nil && *cfg.ShiftTerminal != 0 {
		stretchToTerminal(sigmas, *cfg.ShiftTerminal)
	}

	// torch float32: timesteps = sigmas * num_train_timesteps; the pipeline
	// hands the DiT (1000 - t)/1000.
	ntt := float32(cfg.NumTrainTimesteps)
	sched := Schedule{
		Sigmas:    append(sigmas, 0),
		Timesteps: make([]float32, steps),
		DiTTime:   make([]float32, steps),
	}
	for i := 0; i < steps; i++ {
		t := float32(sigmas[i] * ntt)
		sched.Timesteps[i] = t
		sched.DiTTime[i] = (1000 - t) / 1000
	}
	return sched, nil
}

func checkConfig(cfg weights.SchedulerConfig) error {
	unsupported := func(field string, v any) error {
		return &Error{Field: field, Value: v, Reason: "not supported by this sampler"}
	}
	switch {
	case cfg.UseKarrasSigmas:
		return unsupported("use_karras_sigmas", true)
	case cfg.UseExponential:
		return unsupported("use_exponential_sigmas", true)
	case cfg.UseBetaSigmas:
		return unsupported("use_beta_sigmas", true)
	case cfg.StochasticSampling:
		return unsupported("stochastic_sampling", true)
	case cfg.InvertSigmas:
		return unsupported("invert_sigmas", true)
	case cfg.NumTrainTimesteps < 1:
		return &Error{Field: "num_train_timesteps", Value: cfg.NumTrainTimesteps, Reason: "must be at least 1"}
	case !cfg.UseDynamicShifting && !(cfg.Shift > 0):
		return &Error{Field: "shift", Value: cfg.Shift, Reason: "must be positive"}
	case cfg.ShiftTerminal != nil && *cfg.ShiftTerminal >= 1:
		return &Error{Field: "shift_terminal", Value: *cfg.ShiftTerminal, Reason: "must be below 1"}
	}
	if cfg.UseDynamicShifting {
		switch cfg.TimeShiftType {
		case "", "exponential", "linear":
		default:
			return &Error{Field: "time_shift_type", Value: cfg.TimeShiftType, Reason: `must be "exponential" or "linear"`}
		}
		if cfg.MaxImageSeqLen == cfg.BaseImageSeqLen {
			return &Error{Field: "max_image_seq_len", Value: cfg.MaxImageSeqLen, Reason: "must differ from base_image_seq_len"}
		}
	}
	return nil
}

// calculateShift is diffusers' calculate_shift: mu interpolated linearly in
// the image sequence length between (base_image_seq_len, base_shift) and
// (max_image_seq_len, max_shift), in Python doubles.
func calculateShift(cfg weights.SchedulerConfig, imageSeqLen int) float64 {
	m := (cfg.MaxShift - cfg.BaseShift) / float64(cfg.MaxImageSeqLen-cfg.BaseImageSeqLen)
	b := cfg.BaseShift - float64(m*float64(cfg.BaseImageSeqLen))
	return float64(float64(imageSeqLen)*m) + b
}

// timeShift applies the scheduler's time_shift(mu, 1, t) in place. The input
// is a float32 numpy array and mu a Python float, so numpy casts the scalars
// to float32 and every op rounds to float32:
// exponential: e^mu / (e^mu + (1/t - 1)); linear: mu / (mu + (1/t - 1)).
func timeShift(kind string, mu float64, t []float32) {
	a := float32(mu)
	if kind != "linear" {
		a = float32(math.Exp(mu))
	}
	for i, s := range t {
		t[i] = a / (a + (1/s - 1))
	}
}

// stretchToTerminal is stretch_shift_to_terminal: rescale 1-σ so the last
// sigma becomes shift_terminal. With the numpy 1.x of the reference
// environment, the scale factor is a float64 scalar (np.float32 / Python
// float) applied to the float32 array as float32.
func stretchToTerminal(sigmas []float32, terminal float64) {
	last := 1 - sigmas[len(sigmas)-1]
	scale := float32(float64(last) / (1 - terminal))
	for i, s := range sigmas {
		sigmas[i] = 1 - (1-s)/scale
	}
}

// linspace32 is torch.linspace(start, end, n) for float32 on the CPU.
//
// torch computes step = (end-start)/(n-1) in float, fills the first half
// upward from start (start + step·i) and the second half downward from end
// (end - step·(n-1-i)), so both end points are exact. Its loop writes 16
// values per iteration as two 8-lane vectors, each anchored at its first
// index with that per-element formula (the half is chosen by the anchor) and
// continued upward as anchor + k·step; the last n mod 16 values use the
// per-element formula. In the AVX2 build GCC contracts the per-element
// formula into one FMA, while the lanes anchor + k·step round the product and
// the sum separately (in both builds). This reproduces the fixtures for
// n = 4, 8, 9, 12, 50 and the exact set of n ≤ 300 where the two kernels
// disagree.
func linspace32(start, end float32, n int, k Kernel) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(n-1)
	halfway := n / 2
	fused := k == KernelAVX2
	// scalar is the per-element formula, an FMA in the AVX2 build.
	scalar := func(i int) float32 {
		a, b := start, step
		m := float32(i)
		if i >= halfway {
			a, b, m = end, -step, float32(n-1-i)
		}
		if fused {
			return fma32(b, m, a)
		}
		return a + float32(b*m)
	}
	const lanes = 8
	i := 0
	for ; i+2*lanes <= n; i += 2 * lanes {
		for _, v := range [2]int{i, i + lanes} {
			base := scalar(v)
			out[v] = base
			for l := 1; l < lanes; l++ {
				out[v+l] = base + float32(float32(l)*step)
			}
		}
	}
	for ; i < n; i++ {
		out[i] = scalar(i)
	}
	return out
}
