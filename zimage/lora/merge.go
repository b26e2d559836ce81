package lora

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Merged is a transformer's tensors with merged copies of the weights some
// adapters touch; every other tensor is the base's own (not copied).
type Merged struct {
	base  Source
	over  map[string]*weights.Tensor
	bytes int64
}

// Tensor returns the merged copy of name, or the base tensor.
func (m *Merged) Tensor(name string) (*weights.Tensor, bool) {
	if t, ok := m.over[name]; ok {
		return t, true
	}
	return m.base.Tensor(name)
}

// Names returns the base's tensor names.
func (m *Merged) Names() []string { return m.base.Names() }

// Touched returns the names of the merged weights, sorted.
func (m *Merged) Touched() []string { return sortedKeys(m.over) }

// Bytes returns the memory held by the merged copies.
func (m *Merged) Bytes() int64 { return m.bytes }

// StoreDType is the dtype a merged copy of a weight of dtype dt is stored
// in: the weight's own for F32/BF16/F16; BF16 for 8-bit float weights
// (rounding a merge back to fp8 would lose most of the update).
func StoreDType(dt weights.DType) weights.DType {
	switch dt {
	case weights.F32, weights.BF16, weights.F16:
		return dt
	}
	return weights.BF16
}

// MergeBytes returns the memory Merge would allocate for adapters on src.
func MergeBytes(src Source, adapters []*Adapter) int64 {
	seen := map[string]bool{}
	var n int64
	for _, a := range adapters {
		for _, d := range a.Deltas {
			if seen[d.Weight] {
				continue
			}
			seen[d.Weight] = true
			if t, ok := src.Tensor(d.Weight); ok {
				n += int64(t.NumElements()) * int64(StoreDType(t.DType).Size())
			}
		}
	}
	return n
}

// Merge returns base with W' = W + Σᵢ scaleᵢ·Bᵢ·Aᵢ for every weight the
// adapters touch, as PEFT's merge (diffusers fuse_lora) computes it on the
// CPU: adapter by adapter in order, the delta B·A in float32 times the
// scale, rounded to the weight's dtype, then added and rounded again. For
// float32 weights that is plain float32 arithmetic. Adapters must have been
// bound to base.
func Merge(ctx context.Context, base Source, adapters []*Adapter, scales []float32) (*Merged, error) {
	if len(scales) != len(adapters) {
		return nil, fmt.Errorf("lora: merge: %d scales for %d adapters", len(scales), len(adapters))
	}
	type job struct {
		weight string
		deltas []*Delta
		scales []float32
	}
	byWeight := map[string]*job{}
	for i, a := range adapters {
		for _, d := range a.Deltas {
			j := byWeight[d.Weight]
			if j == nil {
				j = &job{weight: d.Weight}
				byWeight[d.Weight] = j
			}
			j.deltas = append(j.deltas, d)
			j.scales = append(j.scales, scales[i])
		}
	}
	m := &Merged{base: base, over: make(map[string]*weights.Tensor, len(byWeight))}
	names := sortedKeys(byWeight)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	workers := min(runtime.GOMAXPROCS(0), 4, max(len(names), 1))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range next {
				j := byWeight[name]
				t, ok := base.Tensor(name)
				var mt *weights.Tensor
				err := ctx.Err()
				if !ok {
					err = fmt.Errorf("lora: merge: %s is not in the model", name)
				} else if err == nil {
					mt, err = mergeOne(ctx, t, j.deltas, j.scales)
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if mt != nil {
					m.over[name] = mt
					m.bytes += int64(len(mt.Data))
				}
				mu.Unlock()
			}
		}()
	}
	for _, n := range names {
		next <- n
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return m, nil
}

// mergeOne merges deltas into a copy of t.
func mergeOne(ctx context.Context, t *weights.Tensor, deltas []*Delta, scales []float32) (*weights.Tensor, error) {
	w, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("lora: merge %s: %w", t.Name, err)
	}
	st := StoreDType(t.DType)
	d := make([]float32, len(w))
	for i, dl := range deltas {
		if err := MergeInto(ctx, w, d, dl, scales[i], st); err != nil {
			return nil, fmt.Errorf("lora: merge %s: %w", t.Name, err)
		}
	}
	out := &weights.Tensor{Name: t.Name, DType: st, Shape: slices.Clone(t.Shape), File: t.File}
	out.Data = make([]byte, len(w)*st.Size())
	switch st {
	case weights.F32:
		weights.EncodeF32(out.Data, w)
	case weights.BF16:
		weights.EncodeBF16(out.Data, w)
	case weights.F16:
		weights.EncodeF16(out.Data, w)
	}
	return out, nil
}

// MergeInto adds d.Scale(scale)·B·A to w [Out, In] in place, computing B·A in
// float32 into scratch (len(w)) and rounding the scaled delta and the sum
// to dt (F32: no rounding), which is PEFT's merge of one adapter.
func MergeInto(ctx context.Context, w, scratch []float32, d *Delta, scale float32, dt weights.DType) error {
	if len(w) != d.Out*d.In || len(scratch) < len(w) {
		return fmt.Errorf("%d weight values for a [%d, %d] delta", len(w), d.Out, d.In)
	}
	if err := gemm.MatMulCtx(ctx, scratch[:len(w)], d.B, d.A, d.Out, d.In, d.Rank); err != nil {
		return err
	}
	s := d.Scale(scale)
	for i, x := range scratch[:len(w)] {
		w[i] = Round(w[i]+Round(x*s, dt), dt)
	}
	return nil
}

// On returns the same merged copies over another opening of the same
// transformer (the pipeline re-binds the DiT after releasing it).
func (m *Merged) On(base Source) *Merged {
	return &Merged{base: base, over: m.over, bytes: m.bytes}
}
