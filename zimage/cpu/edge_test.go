package cpu

import (
	"testing"

	"github.com/zimage/zimage/zimage/compute"
)

// TestDegenerateShapes calls every op with empty dimensions: each must
// either work (empty result) or record an error, never panic.
func TestDegenerateShapes(t *testing.T) {
	b := New()
	shapes := [][]int{{0, 4}, {4, 0}, {0, 0}, {0}, {1, 0, 3}, {0, 2, 2}, {2, 0, 0}, {1, 1, 0, 1}}
	var ts []compute.Tensor
	for _, s := range shapes {
		ts = append(ts, b.FromHost(make([]float32, numel(s)), s...))
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	ops := []func(x, y compute.Tensor){
		func(x, y compute.Tensor) { b.MatMul(x, y, nil) },
		func(x, y compute.Tensor) { b.Attention(x, y, y, 1, 1, 1, false) },
		func(x, y compute.Tensor) { b.Attention(x, x, x, 2, 1, 1, true) },
		func(x, y compute.Tensor) { b.RMSNorm(x, nil, 1e-6) },
		func(x, y compute.Tensor) { b.LayerNorm(x, 1e-6) },
		func(x, y compute.Tensor) { b.GroupNorm(x, y, y, 1, 1e-6) },
		func(x, y compute.Tensor) { b.RoPE(x, y, y, 1, false) },
		func(x, y compute.Tensor) { b.RoPE(x, y, y, 2, true) },
		func(x, y compute.Tensor) { b.SiLU(x) },
		func(x, y compute.Tensor) { b.SwiGLU(x, y) },
		func(x, y compute.Tensor) { b.Add(x, y) },
		func(x, y compute.Tensor) { b.Scale(x, 2, 1) },
		func(x, y compute.Tensor) { b.Modulate(x, y) },
		func(x, y compute.Tensor) { b.GatedAdd(x, x, y) },
		func(x, y compute.Tensor) { b.Conv2D(x, y, nil, 1) },
		func(x, y compute.Tensor) { b.Upsample2x(x) },
		func(x, y compute.Tensor) { b.Transpose(x) },
		func(x, y compute.Tensor) { b.Embedding(x, []int{0}) },
		func(x, y compute.Tensor) { b.Embedding(x, nil) },
		func(x, y compute.Tensor) { b.Rows(x, 0, 0) },
		func(x, y compute.Tensor) { b.Concat(x, y) },
		func(x, y compute.Tensor) { b.Repeat(x, 3) },
		func(x, y compute.Tensor) { b.Slice(x, 0, 0) },
		func(x, y compute.Tensor) { b.Reshape(x, 0) },
		func(x, y compute.Tensor) { b.ToHost(x) },
	}
	for i, op := range ops {
		for _, x := range ts {
			for _, y := range ts {
				b.ResetErr()
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("op %d on %v, %v panicked: %v", i, x.Shape(), y.Shape(), r)
						}
					}()
					op(x, y)
				}()
			}
		}
	}
}
