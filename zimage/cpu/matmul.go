package cpu

import (
	"fmt"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// MatMul returns x·Wᵀ (+ bias): x [M, K], w [N, K], bias [N] or nil. A
// weight's bytes go to the GEMM in their storage dtype (widened panel by
// panel while packing); an activation w is used as float32.
func (b *Backend) MatMul(x, w, bias compute.Tensor) compute.Tensor {
	const op = "MatMul"
	xs, ws := shapeOf(x), shapeOf(w)
	ph := func() compute.Tensor {
		if len(xs) == 2 && len(ws) == 2 {
			return b.placeholder(xs[0], ws[0])
		}
		return b.placeholder(0, 0)
	}
	if b.failed() {
		return ph()
	}
	tx, tw := b.get(op, x), b.get(op, w)
	if tx == nil || tw == nil {
		return ph()
	}
	if len(tx.shape) != 2 || len(tw.shape) != 2 || tx.shape[1] != tw.shape[1] {
		b.shapeErr(op, "want x [M, K] and w [N, K]", x, w, bias)
		return ph()
	}
	m, k, n := tx.shape[0], tx.shape[1], tw.shape[0]
	var bv []float32
	if bias != nil {
		tb := b.get(op, bias)
		if tb == nil {
			return ph()
		}
		if tb.numel() != n || len(tb.shape) != 1 {
			b.shapeErr(op, fmt.Sprintf("bias must be [%d]", n), x, w, bias)
			return ph()
		}
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
	if tw.w != nil && tw.f32 == nil {
		err = gemm.MatMulBTCtx(cw.context(), out.data, xv, tw.w.Data, tw.w.DType, bv, m, n, k)
	} else {
		wv := b.values(op, tw)
		if wv == nil {
			b.Free(out)
			return ph()
		}
		err = gemm.MatMulBTF32Ctx(cw.context(), out.data, xv, wv, bv, m, n, k)
	}
	if err != nil {
		b.opErr(op, cw, err)
		b.Free(out)
		return ph()
	}
	return out
}
