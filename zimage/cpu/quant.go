package cpu

import (
	"fmt"

	"github.com/zimage/zimage/weights"
)

// ggml block-quantized weights (GGUF checkpoints) stay in their blocks: the
// GEMM dequantizes blocks into its packed panels (gemm.MatMulBTQuant) and the
// other ops decode the blocks covering the elements they read.

// WeightQuantized reports that Weight takes every ggml block-quantized
// dtype as stored (the optional compute.QuantWeights interface).
func (b *Backend) WeightQuantized(dt weights.DType) bool { return dt.IsQuantized() }

// checkQuantWeight checks that a quantized weight's rows are whole blocks
// and its bytes match its shape.
func checkQuantWeight(w *weights.Tensor, shape []int) error {
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("cpu: Weight: tensor %q has negative dimension in shape %v", w.Name, shape)
		}
	}
	want, ok := w.DType.TensorBytes(shape)
	if !ok {
		return fmt.Errorf("cpu: Weight: tensor %q %v %v: rows are not whole %d-element blocks", w.Name, w.DType, shape, w.DType.BlockSize())
	}
	if int64(len(w.Data)) != want {
		return fmt.Errorf("cpu: Weight: tensor %q %v %v has %d bytes, want %d", w.Name, w.DType, shape, len(w.Data), want)
	}
	return nil
}

// decodeQuant dequantizes elements [lo, hi) of a quantized weight: the
// blocks covering them are expanded and the range cut out.
func decodeQuant(out []float32, w *weights.Tensor, lo, hi int) ([]float32, error) {
	bs, bb := w.DType.BlockSize(), w.DType.BlockBytes()
	b0, b1 := lo/bs, (hi+bs-1)/bs
	if lo < 0 || hi < lo || b1*bb > len(w.Data) {
		return nil, fmt.Errorf("weight %q: elements [%d, %d) outside its %d bytes of %v", w.Name, lo, hi, len(w.Data), w.DType)
	}
	n := hi - lo
	if n == 0 {
		return []float32{}, nil
	}
	full := (b1 - b0) * bs
	var buf []float32
	if lo == b0*bs && cap(out) >= full {
		buf = out[:full]
	} else {
		buf = make([]float32, full)
	}
	if err := weights.Dequantize(buf, w.Data[b0*bb:b1*bb], w.DType); err != nil {
		return nil, fmt.Errorf("weight %q: %w", w.Name, err)
	}
	v := buf[lo-b0*bs : lo-b0*bs+n]
	if cap(out) >= n && &v[0] != &out[:1][0] {
		copy(out[:n], v)
		return out[:n], nil
	}
	return v, nil
}
