package gemm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/zimage/zimage/weights"
)

// randomQuant returns n rows of k elements in dt: quantized from random
// floats where zimage can quantize dt, random blocks (finite scales)
// otherwise.
func randomQuant(t *testing.T, rng *rand.Rand, dt weights.DType, n, k int) []byte {
	rb, _ := dt.RowBytes(k)
	b := make([]byte, n*rb)
	if weights.QuantizeBlock(dt) != nil {
		x := make([]float32, n*k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		if err := weights.Quantize(b, x, dt); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	// Replace every f16 field that can be a scale with a small finite value
	// by re-encoding each block's decoded output when it is not finite.
	bs, bb := dt.BlockSize(), dt.BlockBytes()
	tmp := make([]float32, bs)
	deq := weights.DequantBlock(dt)
	for off := 0; off < len(b); off += bb {
		for try := 0; ; try++ {
			deq(tmp, b[off:off+bb])
			finite := true
			for _, v := range tmp {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e4 {
					finite = false
					break
				}
			}
			if finite {
				break
			}
			for i := off; i < off+bb; i++ {
				b[i] = byte(rng.IntN(256)) & 0x3b // small exponents in any f16 field
			}
		}
	}
	return b
}

func TestMatMulBTQuant(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1, weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K} {
		for _, sz := range [][3]int{{1, 5, 256}, {3, 17, 512}, {37, 70, 256}, {9, 2100, 512}} {
			m, n, k := sz[0], sz[1], sz[2]
			b := randomQuant(t, rng, dt, n, k)
			bf := make([]float32, n*k)
			if err := weights.Dequantize(bf, b, dt); err != nil {
				t.Fatal(err)
			}
			a := make([]float32, m*k)
			for i := range a {
				a[i] = float32(rng.NormFloat64())
			}
			bias := make([]float32, n)
			for i := range bias {
				bias[i] = float32(i) * 0.01
			}
			got := make([]float32, m*n)
			want := make([]float32, m*n)
			if err := MatMulBTQuant(got, a, b, dt, bias, m, n, k); err != nil {
				t.Fatalf("%v %v: %v", dt, sz, err)
			}
			Reference(want, a, bf, true, bias, m, n, k)
			for i := range got {
				// Reassociation only: relative to Σ|a·b| ≤ sqrt(k)·|a||b| scale.
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i])))*math.Sqrt(float64(k)) {
					t.Fatalf("%v %v: C[%d] = %g, reference %g", dt, sz, i, got[i], want[i])
				}
			}
		}
	}
}

func TestMatMulBTQuantErrors(t *testing.T) {
	c, a := make([]float32, 4), make([]float32, 64)
	if err := MatMulBTQuant(c, a, make([]byte, 34), weights.BF16, nil, 1, 1, 32); !errors.Is(err, ErrDType) {
		t.Errorf("BF16: %v", err)
	}
	if err := MatMulBTQuant(c, a, make([]byte, 34), weights.Q8_0, nil, 1, 1, 48); !errors.Is(err, ErrShape) {
		t.Errorf("partial block: %v", err)
	}
	if err := MatMulBTQuant(c, a, make([]byte, 33), weights.Q8_0, nil, 1, 1, 32); !errors.Is(err, ErrShape) {
		t.Errorf("short B: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := MatMulBTQuantCtx(ctx, c, a, make([]byte, 34), weights.Q8_0, nil, 1, 1, 32); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// BenchmarkMatMulBTQuant compares a quantized right operand with the same
// product on bf16 weights (the speed the quantized path must not fall
// below), from the GEMV sizes (M ≤ 8) to a longer left operand:
// go test -run X -bench MatMulBTQuant ./zimage/cpu/gemm
func BenchmarkMatMulBTQuant(b *testing.B) {
	benchQuant(b, 1024, 2560, []int{1, 8, 16, 64, 256}, []weights.DType{weights.BF16, weights.Q8_0, weights.Q4_K,
		weights.Q6_K, weights.Q5_K, weights.Q4_0, weights.Q5_0, weights.Q3_K, weights.Q4_1, weights.Q5_1, weights.Q2_K})
}

// BenchmarkMatMulBTQuantLarge is BenchmarkMatMulBTQuant on a DiT feed-
// forward weight (10240×3840: 79 MB in bf16, more than the L3 cache) at
// the GEMV sizes, where reading the weights is most of the work:
// go test -run X -bench MatMulBTQuantLarge ./zimage/cpu/gemm
func BenchmarkMatMulBTQuantLarge(b *testing.B) {
	benchQuant(b, 10240, 3840, []int{1, 8}, []weights.DType{weights.BF16, weights.Q8_0, weights.Q4_K, weights.Q6_K, weights.Q5_K})
}

// BenchmarkMatMulBTQuantPaired times the same products in pairs — the
// bf16-weight call, then the quantized one, alternately in each iteration —
// and reports the median time of each (bf16-ms, quant-ms) and the median
// of the per-pair ratios (ratio = quant/bf16), so that load from other
// processes on a shared machine hits both sides alike:
// go test -run '^$' -bench MatMulBTQuantPaired -benchtime 100x ./zimage/cpu/gemm
// (ZIMAGE_QUANT_BENCH_LARGE=1: the 10240×3840 weight of
// BenchmarkMatMulBTQuantLarge, M = 1 and 8).
func BenchmarkMatMulBTQuantPaired(b *testing.B) {
	n, k, ms := 1024, 2560, []int{1, 8, 16, 64, 256}
	if os.Getenv("ZIMAGE_QUANT_BENCH_LARGE") != "" {
		n, k, ms = 10240, 3840, []int{1, 8}
	}
	types := []weights.DType{weights.Q8_0, weights.Q4_K, weights.Q6_K, weights.Q5_K, weights.Q4_0,
		weights.Q5_0, weights.Q3_K, weights.Q4_1, weights.Q5_1, weights.Q2_K}
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	bf := make([]byte, 2*n*k)
	weights.EncodeBF16(bf, x)
	data := map[weights.DType][]byte{}
	for _, dt := range types {
		rb, _ := dt.RowBytes(k)
		data[dt] = make([]byte, n*rb)
		if err := weights.Quantize(data[dt], x, dt); err != nil {
			b.Fatal(err)
		}
	}
	median := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, m := range ms {
		a := make([]float32, m*k)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		c := make([]float32, m*n)
		for _, dt := range types {
			b.Run(fmt.Sprintf("m=%d/%s", m, dt), func(b *testing.B) {
				var tb, tq, r []float64
				for b.Loop() {
					t0 := time.Now()
					if err := MatMulBT(c, a, bf, weights.BF16, nil, m, n, k); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if err := MatMulBTQuant(c, a, data[dt], dt, nil, m, n, k); err != nil {
						b.Fatal(err)
					}
					t2 := time.Now()
					db, dq := t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds()
					tb, tq, r = append(tb, db), append(tq, dq), append(r, dq/db)
				}
				b.ReportMetric(median(tb)*1e3, "bf16-ms")
				b.ReportMetric(median(tq)*1e3, "quant-ms")
				b.ReportMetric(median(r), "ratio")
			})
		}
	}
}

func benchQuant(b *testing.B, n, k int, ms []int, types []weights.DType) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	bf := make([]byte, 2*n*k)
	weights.EncodeBF16(bf, x)
	data := map[weights.DType][]byte{weights.BF16: bf}
	for _, dt := range types[1:] {
		rb, _ := dt.RowBytes(k)
		data[dt] = make([]byte, n*rb)
		if err := weights.Quantize(data[dt], x, dt); err != nil {
			b.Fatal(err)
		}
	}
	for _, m := range ms {
		a := make([]float32, m*k)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		c := make([]float32, m*n)
		for _, dt := range types {
			b.Run(fmt.Sprintf("m=%d/%s", m, dt), func(b *testing.B) {
				b.SetBytes(int64(2 * m * n * k)) // flops, as "bytes"
				for b.Loop() {
					var err error
					if dt == weights.BF16 {
						err = MatMulBT(c, a, data[dt], dt, nil, m, n, k)
					} else {
						err = MatMulBTQuant(c, a, data[dt], dt, nil, m, n, k)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
