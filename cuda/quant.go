package cuda

import (
	"fmt"
	"slices"
	"strings"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// ggml block-quantized weights (GGUF checkpoints) stay in their blocks in
// device memory: Weight uploads the raw bytes, and MatMul dequantizes the
// weight into a reusable scratch of the backend's dtype (the dequant
// kernels of cuda/kernels/dequant.cu, bit-exact to weights.Dequantize) just
// before the cuBLASLt product. The scratch is sized to the largest weight
// multiplied so far (≈ 79 MB for the DiT's 10240×3840 FFN weights in bf16),
// grows on demand and is counted in the backend's memory tracking.
// Embedding dequantizes the rows it gathers; any other op that receives a
// quantized tensor works on a temporary expansion of it.

// WeightQuantized reports that Weight keeps every ggml block type as stored
// (the optional compute.QuantWeights interface): the model loaders then hand
// the blocks over instead of expanding them to bf16 on the host, and the
// residency planner counts their stored size. False once the self-test has
// turned FamDequant off.
func (b *Backend) WeightQuantized(dt weights.DType) bool {
	return b.k.dequant[dt] != nil && b.on(FamDequant)
}

// QuantScratchBytes returns the bytes of the dequantization scratch the
// backend holds now (part of CurrentBytes).
func (b *Backend) QuantScratchBytes() uint64 {
	var v uint64
	b.d.Do(func() error { v = b.qscratchN; return nil })
	return v
}

// resolveDequant finds the dequant kernels of dtype s (e.g. zk_dequant_q4_k_bf16).
func (k *kernelSet) resolveDequant(get func(string) *kernel, s string) {
	k.dequant = map[weights.DType]*kernel{}
	for dt := weights.Q4_0; dt.IsQuantized(); dt++ {
		k.dequant[dt] = get("zk_dequant_" + strings.ToLower(dt.String()) + "_" + s)
	}
}

// weightQuant uploads the blocks of a quantized checkpoint tensor as they
// are; the handle has the quantized dtype and its stored size on the device.
func (b *Backend) weightQuant(w *weights.Tensor) compute.Tensor {
	shape := slices.Clone(w.Shape)
	for _, d := range shape {
		if d < 0 {
			b.setErr(fmt.Errorf("cuda: Weight: tensor %q has negative dimension in shape %v", w.Name, shape))
			return b.placeholder(0)
		}
	}
	want, ok := w.DType.TensorBytes(shape)
	if !ok {
		b.setErr(fmt.Errorf("cuda: Weight: tensor %q %v %v: rows are not whole %d-element blocks", w.Name, w.DType, shape, w.DType.BlockSize()))
		return b.placeholder(shape...)
	}
	if int64(len(w.Data)) != want {
		b.setErr(fmt.Errorf("cuda: Weight: tensor %q %v %v has %d bytes, want %d", w.Name, w.DType, shape, len(w.Data), want))
		return b.placeholder(shape...)
	}
	if numel(shape) > maxElems {
		b.setErr(fmt.Errorf("cuda: Weight: tensor %q %v has more than 2^31-1 elements", w.Name, shape))
		return b.placeholder(shape...)
	}
	out := &Tensor{shape: shape, dt: w.DType}
	err := b.d.Do(func() error {
		p, err := b.d.alloc(uint64(want))
		if err != nil {
			return err
		}
		if err := b.upload(p, weights.U8, w.Data, weights.U8); err != nil {
			b.d.free(p)
			return err
		}
		out.ptr = p
		return nil
	})
	if err != nil {
		b.setErr(fmt.Errorf("cuda: Weight: tensor %q: %w", w.Name, err))
		return b.placeholder(shape...)
	}
	return out
}

// dequant enqueues the expansion of n elements (whole blocks) of quantized
// dtype dt at src into dst, in the backend's dtype.
func (b *Backend) dequant(dt weights.DType, src, dst driver.DevicePtr, n int) error {
	k := b.k.dequant[dt]
	if k == nil {
		return fmt.Errorf("no dequantization kernel for %v", dt)
	}
	return b.ew(k, n, func(l *launcher) { l.p(src).p(dst).i(n) })
}

// quantScratch returns a device buffer of at least n bytes for dequantized
// weights, growing the backend's scratch when needed (device thread only).
// The old buffer is freed stream-ordered, after the work queued on it.
func (b *Backend) quantScratch(n uint64) (driver.DevicePtr, error) {
	if n <= b.qscratchN {
		return b.qscratch, nil
	}
	if b.qscratch != 0 {
		if err := b.d.free(b.qscratch); err != nil {
			return 0, err
		}
		b.qscratch, b.qscratchN = 0, 0
	}
	p, err := b.d.alloc(n)
	if err != nil {
		return 0, err
	}
	b.qscratch, b.qscratchN = p, n
	return p, nil
}

// quantOK lists the ops that take quantized operands as they are.
func quantOK(op string, i int) bool {
	switch op {
	case "MatMul":
		return i == 1 // the weight
	case "Embedding", "Reshape":
		return true
	}
	return false
}

// expandQuant replaces the quantized operands of op that it cannot take as
// they are by temporary expansions in the backend's dtype (freed after the
// op by exec, or by the next op).
func (b *Backend) expandQuant(op string, ts []*Tensor) error {
	for i, t := range ts {
		if t == nil || !t.dt.IsQuantized() || quantOK(op, i) {
			continue
		}
		x, err := b.expanded(t)
		if err != nil {
			return fmt.Errorf("cuda: %s: expanding a %v operand: %w", op, t.dt, err)
		}
		ts[i] = x
	}
	return nil
}

// expanded returns a temporary expansion of quantized t in the backend's
// dtype, registered in b.temps.
func (b *Backend) expanded(t *Tensor) (*Tensor, error) {
	n := t.numel()
	x := &Tensor{shape: slices.Clone(t.shape), dt: b.dt}
	err := b.d.Do(func() error {
		p, err := b.d.alloc(uint64(n * b.esize))
		if err != nil {
			return err
		}
		if err := b.dequant(t.dt, t.ptr, p, n); err != nil {
			b.d.free(p)
			return err
		}
		x.ptr = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.temps = append(b.temps, x)
	return x, nil
}

// freeTemps releases the temporary expansions of the last op.
func (b *Backend) freeTemps() {
	if len(b.temps) == 0 {
		return
	}
	ts := b.temps
	b.temps = nil
	b.d.Do(func() error {
		for _, t := range ts {
			b.d.free(t.ptr)
		}
		return nil
	})
}

// dropTemp frees one temporary expansion (ToHost's own), leaving those of
// an op in progress.
func (b *Backend) dropTemp(x *Tensor) {
	for i, t := range b.temps {
		if t == x {
			b.temps = append(b.temps[:i], b.temps[i+1:]...)
			b.d.Do(func() error { return b.d.free(x.ptr) })
			return
		}
	}
}
