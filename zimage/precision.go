package zimage

import "fmt"

// Precision is the arithmetic the CPU backend uses for its matrix products
// (WithPrecision).
type Precision int

const (
	// Float32 computes everything in float32 (exact; the default).
	Float32 Precision = iota
	// BFloat16 rounds activations to bfloat16 before the large GEMMs and
	// attention's QKᵀ and PV and accumulates the products in float32
	// (VDPBF16PS on CPUs with AVX512-BF16, about twice the float32 rate).
	// Norms, softmax, RoPE, the residual stream and the sampler stay
	// float32. Q8_0 and Q3_K–Q6_K weights of a GGUF checkpoint are
	// multiplied in int8 instead (activations quantized per 32 values as in
	// llama.cpp's q8_0 × q8_0, VPDPBUSD) where the CPU has AVX512-VNNI (or
	// AVX-VNNI). Images differ from Float32 ones by a fraction of a level.
	BFloat16
)

// String returns "fp32" or "bf16", the --precision names.
func (p Precision) String() string {
	switch p {
	case Float32:
		return "fp32"
	case BFloat16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// ParsePrecision parses "fp32"/"float32" or "bf16"/"bfloat16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32", "float32", "f32":
		return Float32, nil
	case "bf16", "bfloat16":
		return BFloat16, nil
	}
	return Float32, fmt.Errorf("zimage: unknown precision %q (want fp32 or bf16)", s)
}
