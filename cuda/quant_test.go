package cuda

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

var quantTypes = []weights.DType{weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1, weights.Q8_0,
	weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K}

// f16Fields are the byte offsets of each block type's f16 scales.
var f16Fields = map[weights.DType][]int{
	weights.Q4_0: {0}, weights.Q4_1: {0, 2}, weights.Q5_0: {0}, weights.Q5_1: {0, 2}, weights.Q8_0: {0},
	weights.Q2_K: {80, 82}, weights.Q3_K: {108}, weights.Q4_K: {0, 2}, weights.Q5_K: {0, 2}, weights.Q6_K: {208},
}

// randomQuant returns a [rows, cols] tensor of dtype dt with random block
// bytes and finite random f16 scales (normal and subnormal).
func randomQuant(t testing.TB, r *rand.Rand, dt weights.DType, rows, cols int) *weights.Tensor {
	t.Helper()
	n, ok := dt.TensorBytes([]int{rows, cols})
	if !ok {
		t.Fatalf("%v: %d columns are not whole blocks", dt, cols)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	bb := dt.BlockBytes()
	for blk := 0; blk < len(data); blk += bb {
		for _, off := range f16Fields[dt] {
			h := uint16(r.Uint32())
			if h>>10&0x1f == 0x1f { // Inf/NaN: make it a large finite value
				h &^= 0x400
			}
			binary.LittleEndian.PutUint16(data[blk+off:], h)
		}
	}
	return &weights.Tensor{Name: "w." + dt.String(), DType: dt, Shape: []int{rows, cols}, Data: data}
}

// expand is the host reference: weights.Dequantize, rounded to the
// backend's dtype.
func expand(t testing.TB, w *weights.Tensor, prec Precision) *weights.Tensor {
	t.Helper()
	to := weights.BF16
	if prec == F32 {
		to = weights.F32
	}
	e, err := weights.DequantizeTo(w, to)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestDequantKernels runs every dequantization kernel on the host shim on
// random blocks (row counts that leave the last grid block ragged) and
// compares bit for bit with weights.Dequantize, in f32 and bf16.
func TestDequantKernels(t *testing.T) {
	for _, prec := range []Precision{F32, BF16} {
		b, _, _ := newFake(t, prec, true)
		r := rand.New(rand.NewPCG(1, uint64(prec)))
		for _, dt := range quantTypes {
			for _, shape := range [][2]int{{1, dt.BlockSize()}, {3, 2 * dt.BlockSize()}, {7, 3 * dt.BlockSize()}} {
				w := randomQuant(t, r, dt, shape[0], shape[1])
				h := b.Weight(w)
				got := b.ToHost(h)
				if err := b.Err(); err != nil {
					t.Fatalf("%v %v: %v", prec, dt, err)
				}
				if d := h.(*Tensor).dt; d != dt {
					t.Fatalf("%v: weight handle has dtype %v", dt, d)
				}
				want := hostValues(t, expand(t, w, prec))
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v %v %v: element %d = %g (%#x), want %g (%#x)", prec, dt, shape, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
				b.Free(h)
			}
		}
	}
}

// hostValues decodes a host tensor (F32 or BF16) to float32.
func hostValues(t testing.TB, w *weights.Tensor) []float32 {
	t.Helper()
	out := make([]float32, w.NumElements())
	if err := w.DecodeF32(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQuantMatMul checks that a quantized weight occupies its stored size
// on the device, and that MatMul (plain and on a row view of a fused
// weight), Embedding and an op without quantized support (Rows) give
// exactly the results of the same weight expanded on the host.
func TestQuantMatMul(t *testing.T) {
	for _, prec := range []Precision{F32, BF16} {
		b, _, _ := newFake(t, prec, true)
		r := rand.New(rand.NewPCG(2, uint64(prec)))
		for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_K, weights.Q6_K} {
			k := 2 * dt.BlockSize()
			fused := randomQuant(t, r, dt, 9, k)
			w, err := fused.Rows(3, 6) // the k part of a fused qkv
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, 5*k)
			for i := range x {
				x[i] = r.Float32()*2 - 1
			}
			bias := []float32{0.5, -1, 2}
			before := b.CurrentBytes()
			hq := b.Weight(w)
			if got, want := b.CurrentBytes()-before, uint64(len(w.Data)); got != want {
				t.Errorf("%v %v: weight holds %d device bytes, want its stored %d", prec, dt, got, want)
			}
			he := b.Weight(expand(t, w, prec))
			hx, hb := b.FromHost(x, 5, k), b.FromHost(bias, 3)
			got, want := b.ToHost(b.MatMul(hx, hq, hb)), b.ToHost(b.MatMul(hx, he, hb))
			if err := b.Err(); err != nil {
				t.Fatal(err)
			}
			equalBits(t, prec.String()+" "+dt.String()+" MatMul", got, want)
			if s := b.QuantScratchBytes(); s < uint64(3*k*b.esize) {
				t.Errorf("scratch %d bytes, want ≥ %d", s, 3*k*b.esize)
			}
			ids := []int{2, 0, 2, 1}
			equalBits(t, dt.String()+" Embedding", b.ToHost(b.Embedding(hq, ids)), b.ToHost(b.Embedding(he, ids)))
			equalBits(t, dt.String()+" Rows", b.ToHost(b.Rows(hq, 1, 3)), b.ToHost(b.Rows(he, 1, 3)))
			rq := b.Reshape(hq, 3*k/dt.BlockSize(), dt.BlockSize())
			equalBits(t, dt.String()+" Reshape", b.ToHost(rq), b.ToHost(b.Reshape(he, 3*k/dt.BlockSize(), dt.BlockSize())))
			if err := b.Err(); err != nil {
				t.Fatal(err)
			}
			b.Free(hq, he, hx, hb)
			if len(b.temps) != 0 {
				t.Errorf("%d temporary expansions left", len(b.temps))
			}
		}
	}
}

func equalBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %g, want %g", what, i, got[i], want[i])
		}
	}
}

// TestQuantWeightErrors: a quantized weight whose bytes do not match its
// shape is refused naming the tensor; the backend says it keeps every
// block type.
func TestQuantWeightErrors(t *testing.T) {
	b, _, _ := newFake(t, BF16, false)
	var _ compute.QuantWeights = b
	for _, dt := range quantTypes {
		if !b.WeightQuantized(dt) {
			t.Errorf("WeightQuantized(%v) = false", dt)
		}
	}
	if b.WeightQuantized(weights.BF16) {
		t.Error("WeightQuantized(BF16) = true")
	}
	w := &weights.Tensor{Name: "blk.0.ffn_up.weight", DType: weights.Q8_0, Shape: []int{2, 32}, Data: make([]byte, 60)}
	b.Weight(w)
	if err := b.Err(); err == nil || !strings.Contains(err.Error(), "blk.0.ffn_up.weight") {
		t.Fatalf("short quantized weight: %v", err)
	}
	b.ResetErr()
	w = &weights.Tensor{Name: "odd", DType: weights.Q4_K, Shape: []int{2, 32}, Data: make([]byte, 60)}
	b.Weight(w)
	if err := b.Err(); err == nil || !strings.Contains(err.Error(), "whole") {
		t.Fatalf("ragged quantized rows: %v", err)
	}
}

// TestQuantFamilyOff: with the dequant family off (a failed self-test),
// the backend no longer claims quantized weights, so the loaders expand
// them on the host.
func TestQuantFamilyOff(t *testing.T) {
	b, _, _ := newFake(t, BF16, false, func(o *Options, _ *fakecuda.Fake) { o.Disable = []Family{FamDequant} })
	if b.WeightQuantized(weights.Q8_0) {
		t.Fatal("WeightQuantized with FamDequant off")
	}
	w := &weights.Tensor{Name: "w", DType: weights.Q8_0, Shape: []int{1, 32}, Data: make([]byte, 34)}
	e, err := compute.ExpandQuantized(b, w)
	if err != nil || e.DType != weights.BF16 {
		t.Fatalf("ExpandQuantized: %v %v", e, err)
	}
}
