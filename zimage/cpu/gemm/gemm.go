// Package gemm is the CPU matrix-multiply engine of zimage: a cache-blocked,
// packed, goroutine-parallel GEMM (Goto/BLIS style) with assembly
// micro-kernels (AVX-512, AVX2/FMA) and a portable pure-Go fallback.
//
// The right operand may be stored as F32, BF16, F16, F8E4M3 or F8E5M2; it is
// widened to float32 panel by panel while packing, never as a whole matrix.
// All arithmetic is float32 (results differ from a float64 reference by
// float32 reassociation only: ≲ 1e-5 of Σ|a·b|). C must not overlap A or B.
//
// The micro-kernel is chosen at start-up from the CPU's features: AVX-512
// (6×64 tiles), AVX2/FMA (6×16) or portable Go (4×4); KernelName reports it.
// Calls with at most 8 rows of A skip packing and stream B once through
// dot-product kernels (memory-bound GEMV). All functions are safe for
// concurrent use.
//
// Two reduced-precision engines sit beside the float32 one: MatMulBTBF16
// and friends (bf16.go: bf16 operands, float32 accumulation, VDPBF16PS with
// AVX512-BF16) and MatMulBTQ80 (q8.go: Q8_0 weights × per-block int8
// activations, VPDPBUSD with AVX512-VNNI, bit-exact to a scalar reference).
//
// # Cancellation
//
// The ...Ctx variants give up when their context is done: every thread
// checks a flag (one atomic load) before each task, so a cancelled call
// returns ctx.Err() once each thread has finished the task in hand
// (milliseconds: a task is one B block, ≲ 0.4 GFLOP), leaving C partially
// written. A context that is never done (Done() == nil) costs nothing.
package gemm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/zimage/zimage/weights"
)

// ErrShape is wrapped by every size/length error.
var ErrShape = errors.New("gemm: bad shape")

// ErrDType is wrapped when the right operand's dtype is not supported.
var ErrDType = errors.New("gemm: unsupported dtype")

// MatMulBT computes C[m,n] = A[m,k]·B[n,k]ᵀ (+ bias[n] when bias != nil),
// overwriting C. A and C are float32 row-major (lda = k, ldc = n). B is
// row-major [n,k] raw little-endian bytes of dtype bt: weights.F32, BF16, F16,
// F8E4M3 or F8E5M2. B is converted to float32 while packing panels. Work is
// split over the configured number of threads (see SetThreads) with a shared
// worker pool; small problems run inline. Invalid sizes or dtypes return an
// error and leave C untouched.
func MatMulBT(c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	return matMulBT(nil, c, a, b, bt, bias, m, n, k)
}

// MatMulBTCtx is MatMulBT that gives up when ctx is done (see Cancellation).
func MatMulBTCtx(ctx context.Context, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	return finish(ctx, stop, release, matMulBT(stop, c, a, b, bt, bias, m, n, k))
}

func matMulBT(stop *atomic.Bool, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	switch bt {
	case weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2:
	default:
		return fmt.Errorf("%w %v for B (want F32, BF16, F16, F8_E4M3 or F8_E5M2)", ErrDType, bt)
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return err
	}
	if need := n * k * bt.Size(); len(b) < need {
		return fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), need, n, k, bt)
	}
	run(stop, c, a, newBSource(b, bt, n, k), bias, m, n, k)
	return nil
}

// MatMulBTF32 is MatMulBT with a float32 B [n,k] (e.g. activations as the
// right operand).
func MatMulBTF32(c, a, b, bias []float32, m, n, k int) error {
	return matMulBTF32(nil, c, a, b, bias, m, n, k)
}

// MatMulBTF32Ctx is MatMulBTF32 that gives up when ctx is done (see
// Cancellation).
func MatMulBTF32Ctx(ctx context.Context, c, a, b, bias []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	return finish(ctx, stop, release, matMulBTF32(stop, c, a, b, bias, m, n, k))
}

func matMulBTF32(stop *atomic.Bool, c, a, b, bias []float32, m, n, k int) error {
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return err
	}
	if len(b) < n*k {
		return fmt.Errorf("%w: B has %d elements, want %d (%d×%d)", ErrShape, len(b), n*k, n, k)
	}
	run(stop, c, a, bSource{kind: srcF32T, f32: b[:n*k], n: n, k: k}, bias, m, n, k)
	return nil
}

// MatMul computes C[m,n] = A[m,k]·B[k,n] for a float32 B stored row-major
// and not transposed, overwriting C.
func MatMul(c, a, b []float32, m, n, k int) error {
	return matMul(nil, c, a, b, m, n, k)
}

// MatMulCtx is MatMul that gives up when ctx is done (see Cancellation).
func MatMulCtx(ctx context.Context, c, a, b []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	return finish(ctx, stop, release, matMul(stop, c, a, b, m, n, k))
}

func matMul(stop *atomic.Bool, c, a, b []float32, m, n, k int) error {
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	if err := checkLens(c, a, nil, m, n, k); err != nil {
		return err
	}
	if len(b) < n*k {
		return fmt.Errorf("%w: B has %d elements, want %d (%d×%d)", ErrShape, len(b), n*k, k, n)
	}
	run(stop, c, a, bSource{kind: srcF32N, f32: b[:n*k], n: n, k: k}, nil, m, n, k)
	return nil
}

func checkDims(m, n, k int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("%w: negative size m=%d n=%d k=%d", ErrShape, m, n, k)
	}
	// Every product below must fit in an int (and the byte size of B too).
	const lim = math.MaxInt32
	if m > lim || n > lim || k > lim ||
		(k > 0 && m > math.MaxInt/8/k) || (k > 0 && n > math.MaxInt/8/k) || (n > 0 && m > math.MaxInt/8/n) {
		return fmt.Errorf("%w: size overflow m=%d n=%d k=%d", ErrShape, m, n, k)
	}
	return nil
}

func checkLens(c, a, bias []float32, m, n, k int) error {
	if len(c) < m*n {
		return fmt.Errorf("%w: C has %d elements, want %d (%d×%d)", ErrShape, len(c), m*n, m, n)
	}
	if len(a) < m*k {
		return fmt.Errorf("%w: A has %d elements, want %d (%d×%d)", ErrShape, len(a), m*k, m, k)
	}
	if bias != nil && len(bias) < n {
		return fmt.Errorf("%w: bias has %d elements, want %d", ErrShape, len(bias), n)
	}
	return nil
}

// Reference is the slow, obviously correct triple loop with float64
// accumulation, used by tests: C = A·B (B [k,n]) or A·Bᵀ (B [n,k] when
// bTransposed), plus bias[n] when bias != nil.
func Reference(c, a []float32, b []float32, bTransposed bool, bias []float32, m, n, k int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			if bias != nil {
				s = float64(bias[j])
			}
			for p := 0; p < k; p++ {
				bv := b[p*n+j]
				if bTransposed {
					bv = b[j*k+p]
				}
				s += float64(a[i*k+p]) * float64(bv)
			}
			c[i*n+j] = float32(s)
		}
	}
}
