package bench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/zimage/zimage/bench/internal/openblas"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// gemmThreads is the thread count both libraries get (the brief's machine
// has 2 cores); override with ZIMAGE_GEMM_THREADS.
func gemmThreads() int {
	if n, err := strconv.Atoi(os.Getenv("ZIMAGE_GEMM_THREADS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// gemmShapes are M×K×N: DiT projections at 1024² (M = 4096 image tokens),
// a text-encoder MLP and the DiT at 512². ZIMAGE_GEMM_SHAPES="MxKxN,..."
// replaces them.
func gemmShapes(b *testing.B) [][3]int {
	spec := os.Getenv("ZIMAGE_GEMM_SHAPES")
	if spec == "" {
		return [][3]int{{4096, 3840, 3840}, {4096, 3840, 10240}, {4096, 10240, 3840}, {512, 2560, 9728}, {1024, 3840, 3840}}
	}
	var out [][3]int
	for _, s := range strings.Split(spec, ",") {
		var m, k, n int
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "%dx%dx%d", &m, &k, &n); err != nil || m <= 0 || k <= 0 || n <= 0 {
			b.Fatalf("ZIMAGE_GEMM_SHAPES: bad shape %q (want MxKxN)", s)
		}
		out = append(out, [3]int{m, k, n})
	}
	return out
}

var (
	blasOnce sync.Once
	blasLib  *openblas.Lib
	blasErr  error
)

func loadOpenBLAS() (*openblas.Lib, error) {
	blasOnce.Do(func() { blasLib, blasErr = openblas.Load() })
	return blasLib, blasErr
}

// gemmFill writes a deterministic pseudo-random pattern in [-1, 1).
func gemmFill(s []float32, seed uint32) {
	x := seed*2654435761 + 1
	for i := range s {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		s[i] = float32(x>>8)/(1<<23) - 1
	}
}

func gemmBF16(s []float32) []byte {
	out := make([]byte, 2*len(s))
	for i, v := range s {
		h := weights.F32ToBF16(v)
		out[2*i], out[2*i+1] = byte(h), byte(h>>8)
	}
	return out
}

func reportGEMMFlops(b *testing.B, m, n, k int) {
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkGEMM compares C = A·Bᵀ (the Linear layout) between zimage's GEMM
// with a float32 B, zimage with a bf16 B (how the CPU backend runs real
// weights) and OpenBLAS cblas_sgemm (float32), all on gemmThreads() threads.
// Names are GEMM/<impl>/<M>x<K>x<N>.
func BenchmarkGEMM(b *testing.B) {
	threads := gemmThreads()
	gemm.SetThreads(threads)
	defer gemm.SetThreads(0)
	blas, blasErr := loadOpenBLAS()
	if blasErr == nil {
		blas.SetThreads(threads)
		b.Logf("openblas: %s; config %q; core %s; threads %d; OPENBLAS_CORETYPE=%q OPENBLAS_L2_SIZE=%q",
			blas.Path, blas.Config(), blas.Corename(), blas.Threads(),
			os.Getenv("OPENBLAS_CORETYPE"), os.Getenv("OPENBLAS_L2_SIZE"))
	}
	b.Logf("zimage gemm: kernel %s, threads %d", gemm.KernelName(), threads)
	// Warm up both libraries (thread pools, scratch buffers) off the clock.
	{
		const w = 256
		x := make([]float32, w*w)
		y := make([]float32, w*w)
		_ = gemm.MatMulBTF32(y, x, x, nil, w, w, w)
		if blasErr == nil {
			_ = blas.SgemmBT(y, x, x, w, w, w)
		}
	}
	for _, sh := range gemmShapes(b) {
		m, k, n := sh[0], sh[1], sh[2]
		name := fmt.Sprintf("%dx%dx%d", m, k, n)
		a := make([]float32, m*k)
		bf := make([]float32, n*k)
		c := make([]float32, m*n)
		gemmFill(a, 1)
		gemmFill(bf, 2)
		gemmFill(c, 3) // fault C's pages in before the first timed run
		b.Run("zimage/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := gemm.MatMulBTF32(c, a, bf, nil, m, n, k); err != nil {
					b.Fatal(err)
				}
			}
			reportGEMMFlops(b, m, n, k)
		})
		bb := gemmBF16(bf)
		b.Run("zimage-bf16/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := gemm.MatMulBT(c, a, bb, weights.BF16, nil, m, n, k); err != nil {
					b.Fatal(err)
				}
			}
			reportGEMMFlops(b, m, n, k)
		})
		// bf16 compute: A rounded to bf16, VDPBF16PS where available.
		b.Run("zimage-bf16dot/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := gemm.MatMulBTBF16(c, a, bb, weights.BF16, nil, m, n, k); err != nil {
					b.Fatal(err)
				}
			}
			reportGEMMFlops(b, m, n, k)
		})
		bb = nil
		b.Run("openblas/"+name, func(b *testing.B) {
			if blasErr != nil {
				b.Skip(blasErr)
			}
			for b.Loop() {
				if err := blas.SgemmBT(c, a, bf, m, n, k); err != nil {
					b.Fatal(err)
				}
			}
			reportGEMMFlops(b, m, n, k)
		})
	}
}

// BenchmarkGEMV is the M = 1 case with a bf16 matrix (timestep MLP, adaLN —
// 1×256×15360 per DiT block):
// memory-bound, reported as GB/s of weight bytes read.
func BenchmarkGEMV(b *testing.B) {
	threads := gemmThreads()
	gemm.SetThreads(threads)
	defer gemm.SetThreads(0)
	for _, sh := range [][2]int{{3840, 15360}, {3840, 10240}, {10240, 3840}, {256, 15360}} {
		k, n := sh[0], sh[1]
		a := make([]float32, k)
		w := make([]float32, n*k)
		gemmFill(a, 3)
		gemmFill(w, 4)
		wb := gemmBF16(w)
		c := make([]float32, n)
		_ = gemm.MatMulBT(c, a, wb, weights.BF16, nil, 1, n, k) // warm-up
		b.Run(fmt.Sprintf("zimage-bf16/1x%dx%d", k, n), func(b *testing.B) {
			for b.Loop() {
				if err := gemm.MatMulBT(c, a, wb, weights.BF16, nil, 1, n, k); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(wb))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			reportGEMMFlops(b, 1, n, k)
		})
	}
}

// TestGEMMAgreesWithOpenBLAS checks the two sides of the benchmark compute
// the same product (on a small shape), so the speed comparison is fair.
func TestGEMMAgreesWithOpenBLAS(t *testing.T) {
	blas, err := loadOpenBLAS()
	if err != nil {
		t.Skip(err)
	}
	const m, k, n = 67, 300, 129
	a := make([]float32, m*k)
	bf := make([]float32, n*k)
	gemmFill(a, 5)
	gemmFill(bf, 6)
	got := make([]float32, m*n)
	want := make([]float32, m*n)
	if err := gemm.MatMulBTF32(got, a, bf, nil, m, n, k); err != nil {
		t.Fatal(err)
	}
	if err := blas.SgemmBT(want, a, bf, m, n, k); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4 {
			t.Fatalf("C[%d] = %g, openblas %g", i, got[i], want[i])
		}
	}
}
