package cpu

import (
	"testing"

	"github.com/zimage/zimage/zimage/compute"
)

// FuzzOps calls ops on small tensors of arbitrary shapes and parameters:
// every call must record an error or return a tensor whose ToHost length
// matches its shape, and never panic.
func FuzzOps(f *testing.F) {
	f.Add(uint8(0), uint8(2), uint8(3), uint8(3), uint8(4), uint8(1), uint8(1), int8(1))
	f.Add(uint8(1), uint8(4), uint8(8), uint8(4), uint8(8), uint8(2), uint8(1), int8(0))
	f.Add(uint8(13), uint8(2), uint8(5), uint8(5), uint8(3), uint8(3), uint8(3), int8(1))
	f.Fuzz(func(t *testing.T, op, d0, d1, d2, d3, p0, p1 uint8, pad int8) {
		b := New()
		dims := []int{int(d0 % 9), int(d1 % 9), int(d2 % 9), int(d3 % 9)}
		mk := func(s ...int) compute.Tensor {
			n := numel(s)
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(i%7) - 3
			}
			return b.FromHost(v, s...)
		}
		x2 := mk(dims[0], dims[1])
		y2 := mk(dims[2], dims[3])
		v1 := mk(dims[1])
		x3 := mk(dims[0], dims[1], dims[2])
		w4 := mk(dims[3], dims[0], int(p0%4), int(p1%4))
		h, kv := int(p0%5), int(p1%5)
		var out compute.Tensor
		switch op % 20 {
		case 0:
			out = b.MatMul(x2, y2, v1)
		case 1:
			out = b.Attention(x2, y2, y2, h, kv, 0.5, p0&1 == 0)
		case 2:
			out = b.RMSNorm(x2, v1, 1e-6)
		case 3:
			out = b.GroupNorm(x3, mk(dims[0]), mk(dims[0]), h, 1e-6)
		case 4:
			out = b.RoPE(x2, y2, y2, h, p1&1 == 0)
		case 5:
			out = b.SwiGLU(x2, y2)
		case 6:
			out = b.Modulate(x2, v1)
		case 7:
			out = b.GatedAdd(x2, y2, v1)
		case 8:
			out = b.Conv2D(x3, w4, mk(dims[3]), int(pad%3))
		case 9:
			out = b.Upsample2x(x3)
		case 10:
			out = b.Transpose(x2)
		case 11:
			out = b.Embedding(x2, []int{int(p0) - 2, int(p1)})
		case 12:
			out = b.Rows(x2, int(p0)-1, int(p1))
		case 13:
			out = b.Concat(x2, y2, x3)
		case 14:
			out = b.Repeat(x2, int(pad))
		case 15:
			out = b.Slice(x2, int(p0)-1, int(p1))
		case 16:
			out = b.Reshape(x3, dims[3], int(p0), int(pad))
		case 17:
			out = b.LayerNorm(x3, 1e-5)
		case 18:
			out = b.FromHost(make([]float32, int(p0)), dims[0], int(pad))
		case 19:
			out = b.Attention(x2, x2, x2, h, kv, 1, true)
		}
		got := b.ToHost(out)
		if b.Err() == nil && len(got) != numel(out.Shape()) {
			t.Fatalf("op %d: %d values for shape %v", op%20, len(got), out.Shape())
		}
	})
}
