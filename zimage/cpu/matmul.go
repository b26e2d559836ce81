package cpu

import (
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// MatMul returns x·Wᵀ (+ bias): x [M, K], w [N, K], bias [N] or nil. A
// weight's bytes go to the GEMM in their storage dtype (widened panel by
// panel while packing); an activation w is used as float32.
func (b *Backend) MatMul(x, w, bias compute.Tensor) compute.Tensor {
	const op = "MatMul"
	shape, rule := compute.MatMulShape(x, w, bias)
	ph := func() compute.Tensor { return b.placeholder(shape...) }
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return ph()
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
	m, k, n := tx.shape[0], tx.shape[1], tw.shape[0]
	var bv []float32
	if tb != nil {
		if bv = b.values(op, tb); bv == nil {
			return ph()
		}
	}
	xv := b.values(op, tx)
	if xv == nil {
		return ph()
	}
	out := b.newTensor(m, n)
	cw := b.current()
	var err error
	switch {
	case tw.w != nil && tw.f32 == nil && b.bf16 && tw.w.DType == weights.Q8_0 && m >= gemm.Q80UnpackedMinRows && gemm.HasQ8Dot():
		// Reduced precision allows llama.cpp's q8_0 × q8_0 arithmetic:
		// activations quantized per block, VPDPBUSD (gemm.MatMulBTQ80), on
		// the weight's pre-packed panels once it has them (prepack.go).
		// Products with fewer rows (short prompts in the text encoder)
		// take the bf16 kernel on the dequantized blocks below, packed or
		// not, so that a product's bits never depend on packing.
		var pk *weightPack
		if pk, err = b.packFor(cw.context(), tw, m); err == nil {
			if pk != nil {
				err = gemm.MatMulBTQ80PackedCtx(cw.context(), out.data, xv, pk.q8, bv, m)
			} else {
				err = gemm.MatMulBTQ80Ctx(cw.context(), out.data, xv, tw.w.Data, bv, m, n, k)
			}
		}
	case tw.w != nil && tw.f32 == nil && b.bf16 && gemm.KQuantDot(tw.w.DType, m):
		// The K-quants likewise on the int8 dot product, for products with
		// enough rows to pay for unpacking the weights (gemm.MatMulBTKQuantCtx:
		// super-blocks unpacked per task into the kernel's panels).
		err = gemm.MatMulBTKQuantCtx(cw.context(), out.data, xv, tw.w.Data, tw.w.DType, bv, m, n, k)
	case tw.w != nil && tw.f32 == nil && b.bf16 && tw.w.DType.IsQuantized():
		// Other block types (or no VNNI, or few rows): dequantized into
		// bf16 pair panels for the bf16 kernel.
		err = gemm.MatMulBTQuantBF16Ctx(cw.context(), out.data, xv, tw.w.Data, tw.w.DType, bv, m, n, k)
	case tw.w != nil && tw.f32 == nil && tw.w.DType.IsQuantized():
		err = gemm.MatMulBTQuantCtx(cw.context(), out.data, xv, tw.w.Data, tw.w.DType, bv, m, n, k)
	case tw.w != nil && tw.f32 == nil && b.bf16:
		// A weight used every step runs on its pre-packed panels (prepack.go).
		var pk *weightPack
		if pk, err = b.packFor(cw.context(), tw, m); err == nil {
			if pk != nil {
				err = gemm.MatMulBTBF16PackedCtx(cw.context(), out.data, xv, pk.bf, bv, m, n, k)
			} else {
				err = gemm.MatMulBTBF16Ctx(cw.context(), out.data, xv, tw.w.Data, tw.w.DType, bv, m, n, k)
			}
		}
	case tw.w != nil && tw.f32 == nil:
		err = gemm.MatMulBTCtx(cw.context(), out.data, xv, tw.w.Data, tw.w.DType, bv, m, n, k)
	default:
		wv := b.values(op, tw)
		if wv == nil {
			b.Free(out)
			return ph()
		}
		if b.bf16 {
			err = gemm.MatMulBTF32BF16Ctx(cw.context(), out.data, xv, wv, bv, m, n, k)
		} else {
			err = gemm.MatMulBTF32Ctx(cw.context(), out.data, xv, wv, bv, m, n, k)
		}
	}
	if err != nil {
		b.opErr(op, cw, err)
		b.Free(out)
		return ph()
	}
	return out
}
