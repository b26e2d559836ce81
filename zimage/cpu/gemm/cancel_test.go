package gemm

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/zimage/zimage/weights"
)

// cancelLatency is the longest accepted time from cancel to return. A task
// is ≲ 0.4 GFLOP (a few ms on one core); the margin is for a loaded machine
// and the race detector.
// cancelLatency is the bound asserted (typical: a few ms); generous so a
// loaded CI machine does not make the test flaky.
const cancelLatency = time.Second

// TestCtxMatchesPlain: a context that is never cancelled gives the plain
// results (every entry point, packed and GEMV paths).
func TestCtxMatchesPlain(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, sh := range []struct{ m, n, k int }{{1, 300, 129}, {67, 300, 129}, {20, 70, 1100}} {
		m, n, k := sh.m, sh.n, sh.k
		a, bias := randSlice(r, m*k), randSlice(r, n)
		raw, bdec := encode(t, randSlice(r, n*k), weights.BF16)
		got := make([]float32, m*n)
		if err := MatMulBTCtx(ctx, got, a, raw, weights.BF16, bias, m, n, k); err != nil {
			t.Fatal(err)
		}
		check(t, got, a, bdec, true, bias, m, n, k)
		bf := randSlice(r, n*k)
		if err := MatMulBTF32Ctx(ctx, got, a, bf, nil, m, n, k); err != nil {
			t.Fatal(err)
		}
		check(t, got, a, bf, true, nil, m, n, k)
		if err := MatMulCtx(ctx, got, a, bf, m, n, k); err != nil {
			t.Fatal(err)
		}
		check(t, got, a, bf, false, nil, m, n, k)
		// nil and Background contexts run the plain path.
		//lint:ignore SA1012 a nil context is accepted on purpose
		if err := MatMulCtx(nil, got, a, bf, m, n, k); err != nil { //nolint:staticcheck
			t.Fatal(err)
		}
		check(t, got, a, bf, false, nil, m, n, k)
		if err := MatMulCtx(context.Background(), got, a, bf, m, n, k); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCtxAlreadyDone: a done context returns its error without touching C,
// and shape errors still win over nothing (they are checked after ctx).
func TestCtxAlreadyDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := []float32{42}
	if err := MatMulBTF32Ctx(ctx, c, []float32{1}, []float32{2}, nil, 1, 1, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if c[0] != 42 {
		t.Errorf("C was written: %v", c[0])
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if err := MatMulCtx(dctx, c, []float32{1}, []float32{2}, 1, 1, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

// TestCancelMidProduct cancels a large bf16 product (the DiT FFN shape at
// 512 tokens of M, ~1 s on two cores) while it runs: the call returns
// ctx.Err() within cancelLatency, no goroutine is left behind, and the next
// products are correct.
func TestCancelMidProduct(t *testing.T) {
	if testing.Short() {
		t.Skip("large product")
	}
	for _, tc := range []struct {
		name    string
		m, n, k int
	}{
		{"packed", 2048, 10240, 3840},
		// M ≤ 8 streams B (1 GiB of bf16 here, zero pages) in tasks of
		// n/16 rows.
		{"gemv", 8, 1 << 17, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, n, k := tc.m, tc.n, tc.k
			a := make([]float32, m*k)
			for i := range a {
				a[i] = float32(i%7) - 3
			}
			raw := make([]byte, 2*n*k) // bf16 zeros: the values do not matter here
			c := make([]float32, m*n)
			// Warm the pools so the goroutine count is steady.
			if err := MatMulBT(make([]float32, 64*64), make([]float32, 64*4096), raw[:2*64*4096], weights.BF16, nil, 64, 64, 4096); err != nil {
				t.Fatal(err)
			}
			before := runtime.NumGoroutine()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				err error
				at  time.Time
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				err := MatMulBTCtx(ctx, c, a, raw, weights.BF16, nil, m, n, k)
				done <- result{err, time.Now()}
			}()
			time.Sleep(50 * time.Millisecond)
			cancel()
			cancelled := time.Now()
			res := <-done
			if !errors.Is(res.err, context.Canceled) {
				t.Fatalf("err = %v after %v, want context.Canceled (product finished before the cancel?)", res.err, res.at.Sub(start))
			}
			lat := res.at.Sub(cancelled)
			t.Logf("returned %v after cancel (%v after start)", lat, res.at.Sub(start))
			if lat > cancelLatency {
				t.Errorf("returned %v after cancel, want ≤ %v", lat, cancelLatency)
			}

			// The next calls work and are correct.
			r := rand.New(rand.NewPCG(1, 2))
			for _, sh := range []struct{ m, n, k int }{{3, 200, 300}, {150, 300, 700}} {
				aa := randSlice(r, sh.m*sh.k)
				rb, bdec := encode(t, randSlice(r, sh.n*sh.k), weights.BF16)
				got := make([]float32, sh.m*sh.n)
				if err := MatMulBTCtx(context.Background(), got, aa, rb, weights.BF16, nil, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				check(t, got, aa, bdec, true, nil, sh.m, sh.n, sh.k)
			}

			// Pool workers are long-lived by design; nothing else may stay.
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if after := runtime.NumGoroutine(); after > before {
				t.Errorf("%d goroutines before the cancelled call, %d after", before, after)
			}
		})
	}
}

// Bad arguments with a context that can never be done are errors, not a
// call of a nil release function.
func TestBadArgsBackgroundContext(t *testing.T) {
	c, a := make([]float32, 4), make([]float32, 4)
	if err := MatMulBTBF16(c, a, make([]byte, 8), weights.BF16, nil, 2, 2, -1); err == nil {
		t.Error("negative k accepted")
	}
	if err := MatMulBTF32BF16Ctx(context.Background(), c, a, make([]float32, 1), nil, 2, 2, 2); err == nil {
		t.Error("short B accepted")
	}
	if err := MatMulBTBF16Ctx(context.Background(), c, a, make([]byte, 8), weights.I64, nil, 2, 2, 2); err == nil {
		t.Error("I64 B accepted")
	}
}
