package gemm

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/zimage/zimage/weights"
)

var kqTypes = []weights.DType{weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K}

// randKQ returns n rows of k/256 blocks of dt: random bytes (every scale,
// min and value code) with small positive normal float16 super-scales; half the
// rows instead quantize Gaussian values (weights.Quantize), the blocks a
// real model has.
func randKQ(t testing.TB, r *rand.Rand, dt weights.DType, n, k int) []byte {
	bpb, nsb := dt.BlockBytes(), k/256
	b := make([]byte, n*nsb*bpb)
	for j := range n {
		row := b[j*nsb*bpb : (j+1)*nsb*bpb]
		if j%2 == 1 {
			x := make([]float32, k)
			for i := range x {
				x[i] = float32(r.NormFloat64() * 0.05)
			}
			if err := weights.Quantize(row, x, dt); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for i := range row {
			row[i] = byte(r.IntN(256))
		}
		for s := range nsb {
			blk := row[s*bpb : (s+1)*bpb]
			d := f32ToF16(float32(r.Float64()*1e-3 + 1e-4)) // normal float16 (f32ToF16's range)
			switch dt {
			case weights.Q6_K:
				binary.LittleEndian.PutUint16(blk[208:], d)
				continue
			case weights.Q3_K:
				binary.LittleEndian.PutUint16(blk[108:], d)
				continue
			case weights.Q2_K:
				binary.LittleEndian.PutUint16(blk[80:], d)
				binary.LittleEndian.PutUint16(blk[82:], f32ToF16(float32(r.Float64()*1e-3+1e-4)))
				continue
			}
			binary.LittleEndian.PutUint16(blk, d)
			binary.LittleEndian.PutUint16(blk[2:], f32ToF16(float32(r.Float64()*1e-3+1e-4)))
		}
	}
	return b
}

// TestKQuantUnpack: scale·q − min from the unpacked super-blocks equals
// weights.Dequantize bit for bit, so the int8 path multiplies the
// dequantized matrix.
func TestKQuantUnpack(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, dt := range kqTypes {
		f := kqFormats[dt]
		b := randKQ(t, r, dt, 8, 512)
		want := make([]float32, 8*512)
		if err := weights.Dequantize(want, b, dt); err != nil {
			t.Fatal(err)
		}
		var q [64]uint32
		sc, mn := make([]float32, 16), make([]float32, 16)
		var sums [16]int32
		for blk := range 16 {
			f.unpack(q[:], sc[:8*f.sub], mn[:8*f.sub], sums[:8*f.sub], b[blk*dt.BlockBytes():][:dt.BlockBytes()])
			var want16 [16]int32
			for i := range 256 {
				want16[i/(32/f.sub)] += int32(int8(q[i/4] >> (8 * (i % 4))))
			}
			if want16 != sums {
				t.Fatalf("%v block %d: group sums %v, want %v", dt, blk, sums, want16)
			}
			for i := range 256 {
				v := float32(int8(q[i/4] >> (8 * (i % 4))))
				got := float32(sc[i/(32/f.sub)] * v)
				if f.min {
					got -= mn[i/(32/f.sub)]
				}
				if w := want[blk*256+i]; math.Float32bits(got) != math.Float32bits(w) {
					t.Fatalf("%v block %d value %d: %g, dequantized %g", dt, blk, i, got, w)
				}
			}
		}
	}
}

// TestMatMulBTKQuant: the product equals kqReference bit for bit on ragged
// shapes (rows not a multiple of 4, columns not of 48, bias or not), with
// every assembly kernel the CPU runs and the Go kernel, on 1 and 3
// threads; and it is
// close to the float32 product with the dequantized weights.
func TestMatMulBTKQuant(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	asm, skipped := archKQKernels()
	kerns := append([]kqTile{genericKQ}, asm...)
	for _, sk := range skipped {
		t.Logf("kernel %s skipped: %s", sk[0], sk[1])
	}
	defer SetThreads(0)
	prev, prevTr := kqKernel, useTranspose
	defer func() { kqKernel, useTranspose = prev, prevTr }()
	for _, dt := range kqTypes {
		for _, sh := range []struct{ m, n, k int }{{1, 5, 256}, {4, 48, 256}, {7, 50, 512}, {13, 97, 768}, {37, 144, 256}} {
			a := randSlice(r, sh.m*sh.k)
			b := randKQ(t, r, dt, sh.n, sh.k)
			var bias []float32
			if sh.m%2 == 1 {
				bias = randSlice(r, sh.n)
			}
			want := make([]float32, sh.m*sh.n)
			kqReference(kqFormats[dt], want, a, b, bias, sh.m, sh.n, sh.k)
			for ki, kern := range kerns {
				for _, th := range []int{1, 3} {
					kqKernel = kern
					SetThreads(th)
					useTranspose = ki > 0 && prevTr // the Go transpose with the Go kernel
					got := make([]float32, sh.m*sh.n)
					if err := MatMulBTKQuantCtx(context.Background(), got, a, b, dt, bias, sh.m, sh.n, sh.k); err != nil {
						t.Fatal(err)
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v %v kernel %s, %d threads: C[%d] = %g, reference %g", dt, sh, kern.name, th, i, got[i], want[i])
						}
					}
				}
			}
			// Against the dequantized weights in float64: the int8
			// activations cost ~1% of the row's scale, no more.
			deq := make([]float32, sh.n*sh.k)
			if err := weights.Dequantize(deq, b, dt); err != nil {
				t.Fatal(err)
			}
			for i := range sh.m {
				for j := range sh.n {
					var s, mag float64
					for p := range sh.k {
						v := float64(a[i*sh.k+p]) * float64(deq[j*sh.k+p])
						s += v
						mag += math.Abs(v)
					}
					if bias != nil {
						s += float64(bias[j])
					}
					if d := math.Abs(float64(want[i*sh.n+j]) - s); d > 0.02*mag+1e-6 {
						t.Fatalf("%v %v: C[%d,%d] = %g, float64 product %g (Σ|a·w| %g)", dt, sh, i, j, want[i*sh.n+j], s, mag)
					}
				}
			}
		}
	}
}

// TestMatMulBTKQuantErrors: unsupported types, bad k and short B are
// errors, not panics.
func TestMatMulBTKQuantErrors(t *testing.T) {
	c, a := make([]float32, 4), make([]float32, 2*256)
	b := make([]byte, 2*weights.Q4_K.BlockBytes())
	for _, tc := range []struct {
		dt   weights.DType
		b    []byte
		k    int
		name string
	}{
		{weights.Q8_0, b, 256, "Q8_0"},
		{weights.Q4_K, b, 128, "k not a multiple of 256"},
		{weights.Q4_K, b[:10], 256, "short B"},
	} {
		if err := MatMulBTKQuantCtx(context.Background(), c, a[:2*tc.k], tc.b, tc.dt, nil, 2, 2, tc.k); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// BenchmarkMatMulBTKQuant compares, per K-quant type, the int8 path with
// the bf16 path it replaces in bf16 precision (MatMulBTQuantBF16Ctx) at
// the DiT's 512² shapes (GEMM_SHAPE=MxKxN picks another). GOP/cpu-s
// divides by the process's CPU time.
func BenchmarkMatMulBTKQuant(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 9))
	m, n, k := 1056, 3840, 3840
	if s := os.Getenv("GEMM_SHAPE"); s != "" {
		fmt.Sscanf(s, "%dx%dx%d", &m, &k, &n)
	}
	a := randSlice(r, m*k)
	c := make([]float32, m*n)
	for _, dt := range kqTypes {
		w := randKQ(b, r, dt, n, k)
		for _, mode := range []string{"int8", "bf16"} {
			b.Run(fmt.Sprintf("%v/%s/%dx%dx%d", dt, mode, m, k, n), func(b *testing.B) {
				if mode == "int8" && !kqKernel.asm {
					b.Skip("no VPDPBUSD")
				}
				c0 := cpuTime()
				for b.Loop() {
					var err error
					if mode == "int8" {
						err = MatMulBTKQuantCtx(b.Context(), c, a, w, dt, nil, m, n, k)
					} else {
						err = MatMulBTQuantBF16Ctx(b.Context(), c, a, w, dt, nil, m, n, k)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				ops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
				b.ReportMetric(ops/b.Elapsed().Seconds()/1e9, "GOP/s")
				b.ReportMetric(ops/(cpuTime()-c0).Seconds()/1e9, "GOP/cpu-s")
			})
		}
	}
}

// TestKQuantDot: the backend's switch sends Q3_K–Q6_K products from their
// crossover row count on to the int8 path where VPDPBUSD runs, and never
// Q2_K, Q8_0 or float types.
func TestKQuantDot(t *testing.T) {
	for _, dt := range []weights.DType{weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K} {
		if KQuantDot(dt, 1056) != kqKernel.asm || KQuantDot(dt, 64) {
			t.Errorf("KQuantDot(%v): %v at 1056 rows, %v at 64, kernel %s", dt, KQuantDot(dt, 1056), KQuantDot(dt, 64), kqKernel.name)
		}
	}
	for _, dt := range []weights.DType{weights.Q2_K, weights.Q8_0, weights.Q4_0, weights.BF16} {
		if KQuantDot(dt, 4096) {
			t.Errorf("KQuantDot(%v, 4096) = true", dt)
		}
	}
}
