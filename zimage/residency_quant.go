package zimage

import (
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// Quantized (GGUF) weights in the residency plan. A backend that keeps ggml
// blocks as stored (compute.QuantWeights) holds a weight in its stored
// bytes; one that does not holds the bf16/f32 expansion the loaders make
// (compute.ExpandQuantized), which is what NumElements·elem counts.

// weightBytes is the device size of one weight.
func weightBytes(t *weights.Tensor, elem uint64, keepQuant bool) uint64 {
	if keepQuant && t.DType.IsQuantized() {
		if n, ok := t.DType.TensorBytes(t.Shape); ok {
			return uint64(n)
		}
	}
	return uint64(t.NumElements()) * elem
}

// keepsQuantized reports whether b holds quantized weights as stored.
func keepsQuantized(b compute.Backend) bool {
	q, ok := b.(compute.QuantWeights)
	return ok && q.WeightQuantized(weights.Q4_K)
}

// MeasureQuantFootprint is MeasureFootprint for a backend that keeps
// quantized weights in their blocks (GGUF checkpoints): quantized tensors
// count their stored bytes, the rest elem bytes per value.
func MeasureQuantFootprint(te, tr, va TensorLister, text weights.Qwen3Config, ditC weights.DiTConfig, vaeC weights.VAEConfig, elem int) Footprint {
	return measureFootprint(te, tr, va, text, ditC, vaeC, elem, true)
}

// quantScratchBytes is the dequantization scratch a quantized weight needs
// on a backend that keeps it quantized: its expansion in elem-byte values.
func quantScratchBytes(t *weights.Tensor, elem uint64, keepQuant bool) uint64 {
	if !keepQuant || !t.DType.IsQuantized() {
		return 0
	}
	return uint64(t.NumElements()) * elem
}

// addQuantScratch adds the dequantization scratch of a backend keeping
// quantized weights to the plan's scratch. A scratch the backend already
// holds (QuantScratchBytes, reused across requests) is taken out of the
// overhead so that it is not counted twice.
func addQuantScratch(b compute.Backend, fp *Footprint, scratch, overhead uint64) (uint64, uint64) {
	if fp.QuantScratch == 0 {
		return scratch, overhead
	}
	if q, ok := b.(interface{ QuantScratchBytes() uint64 }); ok {
		overhead -= min(overhead, q.QuantScratchBytes())
	}
	return scratch + fp.QuantScratch, overhead
}
