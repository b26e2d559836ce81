package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestPackQuantPanel checks the quantized panel packing (the fused
// dequantize-and-transpose kernels where the CPU has them) against weights'
// dequantizer bit for bit, on random bytes (every scale pattern, NaN only
// has to stay NaN), for ragged column counts and k ranges that start and
// end inside 16-value chunks and quantization blocks.
func TestPackQuantPanel(t *testing.T) {
	defer func(v bool) { useQuantPanel = v }(useQuantPanel)
	for _, fused := range []bool{useQuantPanel, false} {
		useQuantPanel = fused
		testPackQuantPanel(t)
	}
}

func testPackQuantPanel(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const nr = 64
	for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1,
		weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K} {
		bs := dt.BlockSize()
		n, k := 100, 3*max(bs, 96)
		rb, _ := dt.RowBytes(k)
		raw := make([]byte, n*rb)
		for i := range raw {
			raw[i] = byte(rng.IntN(256))
		}
		want := make([]float32, n*k)
		if err := weights.Dequantize(want, raw, dt); err != nil {
			t.Fatal(err)
		}
		src := bSource{kind: srcQuantT, raw: raw, dt: dt, deq: weights.DequantBlock(dt), rb: rb, n: n, k: k}
		ranges := [][2]int{{0, k}, {5, 37}, {22, 200}, {k - 16, 16}, {3, 7}, {17, 15}, {16, 32}, {bs - 3, bs + 5}, {k - 40, 40}, {1, k - 2}}
		for _, cols := range []int{64, 48, 37, 16, 15, 5} {
			for _, jbase := range []int{0, n - cols} {
				for _, r := range ranges {
					p0, kb := r[0], r[1]
					name := fmt.Sprintf("fused=%v %v cols=%d jbase=%d p0=%d kb=%d", useQuantPanel, dt, cols, jbase, p0, kb)
					panel := make([]float32, nr*kb)
					for i := range panel {
						panel[i] = float32(math.Inf(1)) // must all be overwritten
					}
					packQuantPanel(panel, nr, &src, jbase, cols, p0, kb)
					for p := range kb {
						for jj := range cols {
							g, w := panel[p*nr+jj], want[(jbase+jj)*k+p0+p]
							if math.IsNaN(float64(w)) && math.IsNaN(float64(g)) {
								continue
							}
							if math.Float32bits(g) != math.Float32bits(w) {
								t.Fatalf("%s: B(%d, %d) = %g (%#x), reference %g (%#x)", name, p0+p, jbase+jj, g, math.Float32bits(g), w, math.Float32bits(w))
							}
						}
					}
				}
			}
		}
	}
}

// BenchmarkPackQuantPanel times packing the B panels of a 1024×2560 weight
// (nr = 64, k blocks of 854 as the GEMM packs them) from bf16 and from
// quantized blocks: the part of a short product that depends on the dtype.
// go test -run X -bench PackQuantPanel ./zimage/cpu/gemm
func BenchmarkPackQuantPanel(b *testing.B) {
	const n, k, nr, kc = 1024, 2560, 64, 854
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	panel := make([]float32, nr*kc)
	for _, dt := range []weights.DType{weights.BF16, weights.Q8_0, weights.Q4_K, weights.Q6_K, weights.Q5_K, weights.Q4_0,
		weights.Q5_0, weights.Q3_K, weights.Q4_1, weights.Q5_1, weights.Q2_K} {
		var src bSource
		if dt == weights.BF16 {
			raw := make([]byte, 2*n*k)
			weights.EncodeBF16(raw, x)
			src = newBSource(raw, dt, n, k)
		} else {
			rb, _ := dt.RowBytes(k)
			raw := make([]byte, n*rb)
			if err := weights.Quantize(raw, x, dt); err != nil {
				b.Fatal(err)
			}
			src = bSource{kind: srcQuantT, raw: raw, dt: dt, deq: weights.DequantBlock(dt), rb: rb, n: n, k: k}
		}
		b.Run(dt.String(), func(b *testing.B) {
			b.SetBytes(int64(n * k)) // values
			for b.Loop() {
				for p0 := 0; p0 < k; p0 += kc {
					kb := min(kc, k-p0)
					for j0 := 0; j0 < n; j0 += nr {
						packB(panel, &src, j0, nr, p0, kb, nr)
					}
				}
			}
		})
	}
}

// TestGEMVQuantRandomBlocks checks the GEMV path (m ≤ 8: the fused dot
// kernels) against the chunked reference bit for bit on random bytes
// with finite values (bits otherwise random), k beyond one gemvChunk.
func TestGEMVQuantRandomBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1,
		weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K} {
		n, k := 37, 4096+2*dt.BlockSize()
		raw := randomBlocks(rng, dt, n, k)
		for _, m := range []int{1, 2, 3, 5, 8} {
			a := make([]float32, m*k)
			for i := range a {
				a[i] = float32(rng.NormFloat64())
			}
			got, want := make([]float32, m*n), make([]float32, m*n)
			if err := matMulBTQuantMode(nil, false, got, a, raw, dt, nil, m, n, k); err != nil {
				t.Fatal(err)
			}
			if err := matMulBTQuantMode(nil, true, want, a, raw, dt, nil, m, n, k); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if g, w := got[i], want[i]; math.Float32bits(g) != math.Float32bits(w) || math.IsNaN(float64(w)) {
					t.Fatalf("%v m=%d: C[%d] = %g, chunked path %g", dt, m, i, g, w)
				}
			}
		}
	}
}

// randomBlocks returns n rows of k elements of random blocks of dt whose
// values are finite and below 1e4 in magnitude (blocks redrawn until so).
func randomBlocks(rng *rand.Rand, dt weights.DType, n, k int) []byte {
	rb, _ := dt.RowBytes(k)
	b := make([]byte, n*rb)
	bs, bb := dt.BlockSize(), dt.BlockBytes()
	tmp := make([]float32, bs)
	deq := weights.DequantBlock(dt)
	for off := 0; off < len(b); off += bb {
		for {
			for i := off; i < off+bb; i++ {
				b[i] = byte(rng.IntN(256))
			}
			deq(tmp, b[off:off+bb])
			ok := true
			for _, v := range tmp {
				if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 1e4 {
					ok = false
					break
				}
			}
			if ok {
				break
			}
		}
	}
	return b
}
