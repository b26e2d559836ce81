package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestQuantizedWeights: a ggml-quantized weight is used as stored by
// MatMul and Embedding, with the results of its float32 expansion.
func TestQuantizedWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, k, m = 40, 256, 5
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_K, weights.Q6_K} {
		rb, _ := dt.RowBytes(k)
		q := make([]byte, n*rb)
		if err := weights.Quantize(q, x, dt); err != nil {
			t.Fatal(err)
		}
		deq := make([]float32, n*k)
		if err := weights.Dequantize(deq, q, dt); err != nil {
			t.Fatal(err)
		}
		b := New(WithThreads(2))
		if !b.WeightQuantized(dt) {
			t.Fatal("WeightQuantized")
		}
		wq := b.Weight(&weights.Tensor{Name: "w", DType: dt, Shape: []int{n, k}, Data: q})
		wf := b.FromHost(deq, n, k)
		a := make([]float32, m*k)
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		xa := b.FromHost(a, m, k)
		got, want := b.ToHost(b.MatMul(xa, wq, nil)), b.ToHost(b.MatMul(xa, wf, nil))
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%s: MatMul[%d] = %g, want %g", dt, i, got[i], want[i])
			}
		}
		ids := []int{3, 0, 39, 3}
		emb := b.ToHost(b.Embedding(wq, ids))
		for r, id := range ids {
			for j := range k {
				if emb[r*k+j] != deq[id*k+j] {
					t.Fatalf("%s: Embedding row %d col %d = %g, want %g", dt, r, j, emb[r*k+j], deq[id*k+j])
				}
			}
		}
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		// A weight whose bytes do not match its shape is refused.
		b.Weight(&weights.Tensor{Name: "short", DType: dt, Shape: []int{n, k}, Data: q[:len(q)-1]})
		if err := b.Err(); err == nil || !strings.Contains(err.Error(), "short") {
			t.Errorf("%s: short weight: %v", dt, err)
		}
	}
}
