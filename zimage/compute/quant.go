package compute

import "github.com/zimage/zimage/weights"

// QuantWeights is implemented by backends whose Weight takes ggml
// block-quantized tensors (GGUF Q8_0, Q4_K, ...) as stored and computes on
// them. For other backends the model loaders expand such weights to bf16
// first (see ExpandQuantized).
type QuantWeights interface {
	WeightQuantized(dt weights.DType) bool
}

// ExpandQuantized returns w itself when b takes its dtype, or else a bf16
// copy of a quantized w (allocated on the host; the backend's Weight then
// uploads or wraps it as any bf16 checkpoint tensor).
func ExpandQuantized(b Backend, w *weights.Tensor) (*weights.Tensor, error) {
	if !w.DType.IsQuantized() {
		return w, nil
	}
	if q, ok := b.(QuantWeights); ok && q.WeightQuantized(w.DType) {
		return w, nil
	}
	return weights.DequantizeTo(w, weights.BF16)
}
