package dit

import (
	"fmt"

	"github.com/zimage/zimage/zimage/compute"
)

// LoRA is a low-rank update applied at run time to one Linear layer:
// y = x·Wᵀ (+ b) + Scale·(x·Aᵀ)·Bᵀ, PEFT's unmerged forward.
type LoRA struct {
	A     compute.Tensor // [r, in]
	B     compute.Tensor // [out, r]
	Scale float32
}

// LoRAError reports a run-time LoRA update that does not fit the model.
type LoRAError struct {
	Weight string
	Reason string
}

func (e *LoRAError) Error() string { return fmt.Sprintf("dit: LoRA on %s: %s", e.Weight, e.Reason) }

// SetLoRAs replaces the run-time LoRA updates: byWeight maps a checkpoint
// weight name ("layers.0.attention.to_q.weight") to the updates added to
// that Linear, in order. nil removes them all. The tensors stay the
// caller's and must outlive their use. On error nothing changes; on success
// the prepared timesteps (PrepareTimesteps), whose modulations included the
// old updates, are released.
func (m *Model) SetLoRAs(byWeight map[string][]LoRA) error {
	if len(byWeight) == 0 {
		m.ReleaseTimesteps()
		m.lora = nil
		return nil
	}
	set := make(map[compute.Tensor][]LoRA, len(byWeight))
	for name, ls := range byWeight {
		w, ok := m.ld.Bound(name)
		if !ok || len(w.Shape()) != 2 {
			return &LoRAError{Weight: name, Reason: "not a Linear weight of the model"}
		}
		out, in := w.Shape()[0], w.Shape()[1]
		for _, l := range ls {
			a, b := l.A.Shape(), l.B.Shape()
			if len(a) != 2 || len(b) != 2 || a[1] != in || b[0] != out || a[0] != b[1] {
				return &LoRAError{Weight: name, Reason: fmt.Sprintf("A %v, B %v do not make [%d, %d]", a, b, out, in)}
			}
		}
		set[w] = ls
	}
	m.ReleaseTimesteps()
	m.lora = set
	return nil
}

// linear is x·Wᵀ (+ bias) [M, out] plus the run-time LoRA updates of w.
// The scale is applied to the small [M, r] product, so an update costs two
// thin GEMMs, one scaling of M·r values and one add.
func (m *Model) linear(x, w, bias compute.Tensor) compute.Tensor {
	b := m.b
	y := b.MatMul(x, w, bias)
	for _, l := range m.lora[w] {
		t := m.loraDown(x, l.A) // [M, r]
		ts := b.Scale(t, l.Scale, 0)
		u := b.MatMul(ts, l.B, nil) // [M, out]
		sum := b.Add(y, u)
		b.Free(t, ts, u, y)
		y = sum
	}
	return y
}

// linears is m.linear(x, w, nil) for each of ws, the products on one input
// (q, k, v; w1, w3) in one compute.MatMulShared pass when no run-time LoRA
// updates any of them; the results are the same bits either way.
func (m *Model) linears(x compute.Tensor, ws ...compute.Tensor) []compute.Tensor {
	for _, w := range ws {
		if len(m.lora[w]) > 0 {
			out := make([]compute.Tensor, len(ws))
			for i, w := range ws {
				out[i] = m.linear(x, w, nil)
			}
			return out
		}
	}
	return compute.MatMulShared(m.b, x, ws...)
}

// loraDown is x·Aᵀ [M, r]. With many rows it is computed as (A·xᵀ)ᵀ: a
// GEMM with only r output columns leaves a column-blocked GEMM (the CPU
// backend's) one task, while M output columns spread over every thread;
// the transpose of the [r, M] result is cheap.
func (m *Model) loraDown(x, a compute.Tensor) compute.Tensor {
	b := m.b
	if x.Shape()[0] <= 8*a.Shape()[0] {
		return b.MatMul(x, a, nil)
	}
	tt := b.MatMul(a, x, nil) // [r, M]
	t := b.Transpose(tt)
	b.Free(tt)
	return t
}
