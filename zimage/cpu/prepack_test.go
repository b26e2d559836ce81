package cpu

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// randWeight returns a random bf16 checkpoint tensor [n, k].
func randWeight(r *rand.Rand, name string, n, k int) *weights.Tensor {
	v := make([]float32, n*k)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	data := make([]byte, 2*len(v))
	weights.EncodeBF16(data, v)
	return &weights.Tensor{Name: name, DType: weights.BF16, Shape: []int{n, k}, Data: data}
}

func randInput(b *Backend, r *rand.Rand, m, k int) compute.Tensor {
	v := make([]float32, m*k)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return b.FromHost(v, m, k)
}

// product is x·wᵀ on b, read back (or fails the test).
func product(t *testing.T, b *Backend, x, w compute.Tensor) []float32 {
	t.Helper()
	y := b.MatMul(x, w, nil)
	defer b.Free(y)
	out := b.ToHost(y)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func packBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// reference is x·wᵀ in bf16 on a backend that never packs.
func reference(t *testing.T, xv []float32, w *weights.Tensor, m, k int) []float32 {
	t.Helper()
	ref := New(WithBF16(true), WithPackBudget(0))
	return product(t, ref, ref.FromHost(xv, m, k), ref.Weight(w))
}

// TestPackPolicy checks when weights are packed: on the packFirst-th
// product with more than the GEMV's rows in the first request that uses
// them, on the third of a later request, within the budget, in bf16 mode
// only; and that products stay the same bits throughout.
func TestPackPolicy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const m, n, k = 20, 70, 90
	wt := randWeight(r, "w", n, k)
	size := gemm.PackedBF16Bytes(n, k)

	b := New(WithBF16(true))
	x := randInput(b, r, m, k)
	want := reference(t, b.ToHost(x), wt, m, k)
	w := b.Weight(wt)
	for use := 1; use <= packFirst+1; use++ {
		packBits(t, "product", product(t, b, x, w), want)
		if got, packed := b.PackedBytes(), use >= packFirst; (got == size) != packed || (!packed && got != 0) {
			t.Fatalf("after %d products: %d bytes packed (a pack is %d)", use, got, size)
		}
	}

	// Few rows (the GEMV) never count; a new request restarts the count,
	// and a weight used before is packed on its third product.
	b2 := New(WithBF16(true))
	w2 := b2.Weight(wt)
	few := randInput(b2, r, 4, k)
	for range 5 {
		product(t, b2, few, w2)
	}
	x2 := randInput(b2, r, m, k)
	for range packAfter - 1 {
		product(t, b2, x2, w2)
	}
	b2.SetContext(context.Background())
	for range packAfter - 1 {
		product(t, b2, x2, w2)
	}
	if got := b2.PackedBytes(); got != 0 {
		t.Fatalf("%d products per request: %d bytes packed", packAfter-1, got)
	}
	product(t, b2, x2, w2)
	if got := b2.PackedBytes(); got != size {
		t.Fatalf("after %d products in a request: %d bytes packed, want %d", packAfter, got, size)
	}

	// float32 mode and a zero budget never pack; a budget holds one pack.
	for _, c := range []struct {
		name  string
		opts  []Option
		packs int64
	}{
		{"fp32", []Option{WithBF16(false)}, 0},
		{"budget 0", []Option{WithBF16(true), WithPackBudget(0)}, 0},
		{"budget short", []Option{WithBF16(true), WithPackBudget(size - 1)}, 0},
		{"budget one", []Option{WithBF16(true), WithPackBudget(size + size/2)}, size},
	} {
		b := New(c.opts...)
		x := randInput(b, r, m, k)
		wa, wb := b.Weight(wt), b.Weight(randWeight(r, "w2", n, k))
		for range packFirst + 1 {
			product(t, b, x, wa)
			product(t, b, x, wb)
		}
		if got := b.PackedBytes(); got != c.packs {
			t.Errorf("%s: %d bytes packed, want %d", c.name, got, c.packs)
		}
	}
}

// TestPackInvalidation checks that a freed weight handle drops its pack,
// that a handle bound over new bytes (a LoRA merge binds its merged copies
// as new handles after freeing the old ones) computes with the new bytes,
// and that Close drops every pack and leaves the backend usable.
func TestPackInvalidation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m, n, k = 24, 65, 130
	b := New(WithBF16(true))
	x := randInput(b, r, m, k)
	xv := b.ToHost(x)
	base := randWeight(r, "layers.0.attention.to_q.weight", n, k)
	w := b.Weight(base)
	for range packFirst {
		product(t, b, x, w)
	}
	if b.PackedBytes() == 0 {
		t.Fatal("not packed")
	}
	b.Free(w)
	if got := b.PackedBytes(); got != 0 {
		t.Fatalf("after Free: %d bytes packed", got)
	}
	merged := randWeight(r, base.Name, n, k) // the merged copy: same name, new bytes
	w = b.Weight(merged)
	want := reference(t, xv, merged, m, k)
	for range packFirst + 1 {
		packBits(t, "merged weight", product(t, b, x, w), want)
	}
	if b.PackedBytes() == 0 {
		t.Fatal("merged weight not packed")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := b.PackedBytes(); got != 0 {
		t.Fatalf("after Close: %d bytes packed", got)
	}
	for range packFirst + 1 {
		packBits(t, "after Close", product(t, b, x, w), want)
	}
}

// TestMatMulShared checks that MatMulShared equals separate MatMuls bit for
// bit, before and after the weights are packed, in bf16 and float32, and
// that bad operands record errors like MatMul.
func TestMatMulShared(t *testing.T) {
	for _, bf16 := range []bool{true, false} {
		r := rand.New(rand.NewPCG(5, 6))
		const m, k = 30, 100
		b := New(WithBF16(bf16))
		x := randInput(b, r, m, k)
		ws := []compute.Tensor{b.Weight(randWeight(r, "q", 64, k)), b.Weight(randWeight(r, "k", 33, k)), b.Weight(randWeight(r, "v", 130, k))}
		for round := range packFirst + 2 {
			outs := b.MatMulShared(x, ws...)
			for i, w := range ws {
				packBits(t, "shared", b.ToHost(outs[i]), product(t, b, x, w))
			}
			b.Free(outs...)
			if err := b.Err(); err != nil {
				t.Fatalf("bf16 %v round %d: %v", bf16, round, err)
			}
		}
		if packed := b.PackedBytes() > 0; packed != bf16 {
			t.Errorf("bf16 %v: packed %v", bf16, packed)
		}
		bad := b.Weight(randWeight(r, "bad", 8, k+1))
		outs := b.MatMulShared(x, ws[0], bad)
		if len(outs) != 2 || b.Err() == nil {
			t.Errorf("bf16 %v: mismatched k: %d results, err %v", bf16, len(outs), b.Err())
		}
		b.ResetErr()
	}
}

// TestPackConcurrent runs products on one packed weight from several
// goroutines while Close drops the packs (run with -race).
func TestPackConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const m, n, k = 16, 40, 64
	wt := randWeight(r, "w", n, k)
	b := New(WithBF16(true))
	xv := make([]float32, m*k)
	for i := range xv {
		xv[i] = float32(r.NormFloat64())
	}
	want := reference(t, xv, wt, m, k)
	w := b.Weight(wt)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := b.FromHost(xv, m, k)
			for range 10 {
				y := b.MatMul(x, w, nil)
				got := b.ToHost(y)
				b.Free(y)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						errs <- "goroutine result differs"
						return
					}
				}
				if g == 0 {
					b.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestPackQ80 checks Q8_0 weights (GGUF) in bf16 mode: packed by
// gemm.PackQ80 on the third product of a request, their products and
// MatMulShared (one quantization of x) equal gemm.MatMulBTQ80 bit for bit;
// MatMulQ80PackedShared equals MatMulQ80Packed; products with fewer than
// gemm.Q80UnpackedMinRows rows take the bf16 path, packed or not.
func TestPackQ80(t *testing.T) {
	if !gemm.HasQ8Dot() {
		t.Skip("CPU lacks AVX512-VNNI: Q8_0 weights take the dequantizing path, never packed")
	}
	r := rand.New(rand.NewPCG(9, 10))
	const m, k = gemm.Q80UnpackedMinRows + 5, 96 // fewer rows take the bf16 path, never packed
	b := New(WithBF16(true))
	x := randInput(b, r, m, k)
	xv := b.ToHost(x)
	var ws []compute.Tensor
	var raws [][]byte
	var wants [][]float32
	var qps []*gemm.Q80Packed
	for i, n := range []int{40, 7, 97} {
		v := make([]float32, n*k)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		raw := make([]byte, n*(k/32)*34)
		if err := weights.Quantize(raw, v, weights.Q8_0); err != nil {
			t.Fatal(err)
		}
		want := make([]float32, m*n)
		if err := gemm.MatMulBTQ80(want, xv, raw, nil, m, n, k); err != nil {
			t.Fatal(err)
		}
		qp, err := gemm.PackQ80(raw, n, k)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, b.Weight(&weights.Tensor{Name: "w" + string(rune('0'+i)), DType: weights.Q8_0, Shape: []int{n, k}, Data: raw}))
		raws, wants, qps = append(raws, raw), append(wants, want), append(qps, qp)
	}
	var size int64
	for round := range packFirst + 1 {
		outs := b.MatMulShared(x, ws...)
		for i := range ws {
			packBits(t, "Q8_0 shared", b.ToHost(outs[i]), wants[i])
			if round == 0 {
				size += gemm.PackedQ80Bytes(ws[i].Shape()[0], k)
			}
		}
		b.Free(outs...)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if got := b.PackedBytes(); got != size {
		t.Fatalf("%d bytes packed, want %d", got, size)
	}
	outs := b.MatMulQ80PackedShared(x, qps...)
	for i := range qps {
		packBits(t, "MatMulQ80PackedShared", b.ToHost(outs[i]), wants[i])
	}
	b.Free(outs...)
	// Fewer rows keep the bf16 path on the dequantized blocks although the
	// weights are packed now: the same bits as before they were.
	const few = 21
	xs := b.FromHost(xv[:few*k], few, k)
	shared := b.MatMulShared(xs, ws...)
	for i, w := range ws {
		n := w.Shape()[0]
		want := make([]float32, few*n)
		if err := gemm.MatMulBTQuantBF16Ctx(context.Background(), want, xv[:few*k], raws[i], weights.Q8_0, nil, few, n, k); err != nil {
			t.Fatal(err)
		}
		packBits(t, "Q8_0 few rows, MatMul", b.ToHost(b.MatMul(xs, w, nil)), want)
		packBits(t, "Q8_0 few rows, MatMulShared", b.ToHost(shared[i]), want)
	}
	b.MatMulQ80PackedShared(b.FromHost(make([]float32, 2*64), 2, 64), qps...)
	if b.Err() == nil {
		t.Error("MatMulQ80PackedShared with the wrong k: no error")
	}
}

// TestDefaultPackBudget checks that the default budget is positive and at
// most half of the memory the process may use.
func TestDefaultPackBudget(t *testing.T) {
	got := defaultPackBudget()
	if got <= 0 {
		t.Fatalf("default pack budget %d", got)
	}
	if m := physicalMemory(); m > 0 && uint64(got) > m/2 {
		t.Errorf("default pack budget %d of %d bytes of memory", got, m)
	}
	if b := New(); b.packs.budget != got {
		t.Errorf("New: budget %d, want the default %d", b.packs.budget, got)
	}
	if b := New(WithPackBudget(5)); b.packs.budget != 5 {
		t.Errorf("WithPackBudget(5): budget %d", b.packs.budget)
	}
}

// TestPrepack: Prepack packs at once in bf16 mode (the first product then
// uses the pack and equals the unpacked one), skips what does not fit the
// budget, and does nothing in float32 mode or with packing off.
func TestPrepack(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m, n, k = 20, 70, 90
	wt := randWeight(r, "w", n, k)
	size := gemm.PackedBF16Bytes(n, k)

	b := New(WithBF16(true))
	w := b.Weight(wt)
	if err := b.Prepack(context.Background(), w, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.PackedBytes(); got != size {
		t.Fatalf("after Prepack: %d bytes packed, want %d", got, size)
	}
	x := randInput(b, r, m, k)
	packBits(t, "first product", product(t, b, x, w), reference(t, b.ToHost(x), wt, m, k))

	for _, o := range [][]Option{{WithBF16(false)}, {WithBF16(true), WithPackBudget(0)}, {WithBF16(true), WithPackBudget(size - 1)}} {
		b := New(o...)
		if err := b.Prepack(context.Background(), b.Weight(wt)); err != nil {
			t.Fatal(err)
		}
		if got := b.PackedBytes(); got != 0 {
			t.Fatalf("options %d: %d bytes packed, want none", len(o), got)
		}
	}
}
