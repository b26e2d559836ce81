package sampler

import "math"

// Step is the flow-match Euler update x += (sigmaNext - sigma)·noisePred, in
// place and in float32 exactly like the scheduler's step (dt rounded first,
// then the product, then the sum). The pipeline's noisePred is the negated
// DiT output (see NoisePred). x and noisePred must have the same length.
func Step(x, noisePred []float32, sigma, sigmaNext float32) {
	if len(noisePred) != len(x) {
		panic("sampler: Step: len(noisePred) != len(x)")
	}
	dt := sigmaNext - sigma
	for i, v := range noisePred {
		x[i] += float32(dt * v) // float32(...) keeps this a separate multiply and add
	}
}

// NoisePred writes the scheduler input for one step into dst: -pos without
// guidance (neg nil or guidance 0, the Turbo setting), otherwise
// -(pos + guidance·(pos - neg)) with pos/neg the DiT outputs for the prompt
// and the negative prompt. When cfgNorm > 0 the guided prediction is scaled
// down if its L2 norm exceeds cfgNorm·‖pos‖ (ZImagePipeline's
// cfg_normalization). The caller decides per step whether guidance applies
// (current diffusers: guidance > 0; older diffusers and the official code:
// guidance > 1; cfg_truncation forces 0 late in the schedule).
//
// Without normalisation the result is bit-identical to the reference's
// float32 ops. The norms are accumulated in float64 and rounded to float32,
// so with normalisation active the scale factor may differ from torch's
// vector_norm (a float32 reduction) in the last bit.
//
// dst may alias pos or neg; all slices must have the same length.
func NoisePred(dst, pos, neg []float32, guidance float32, cfgNorm float32) {
	if len(pos) != len(dst) || (neg != nil && len(neg) != len(dst)) {
		panic("sampler: NoisePred: slices of different lengths")
	}
	if neg == nil || guidance == 0 {
		for i, p := range pos {
			dst[i] = -p
		}
		return
	}
	var posNorm float32
	if cfgNorm > 0 {
		posNorm = norm32(pos) // before dst (which may alias pos) is written
	}
	for i, p := range pos {
		dst[i] = p + float32(guidance*(p-neg[i]))
	}
	if cfgNorm > 0 {
		maxNorm := float32(posNorm * cfgNorm)
		if predNorm := norm32(dst); predNorm > maxNorm {
			scale := maxNorm / predNorm
			for i := range dst {
				dst[i] *= scale
			}
		}
	}
	for i := range dst {
		dst[i] = -dst[i]
	}
}

// norm32 is the L2 norm of x, accumulated in float64, rounded to float32.
func norm32(x []float32) float32 {
	var s float64
	for _, v := range x {
		s += float64(float64(v) * float64(v))
	}
	return float32(math.Sqrt(s))
}
