package cpu

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// cancelLatency is the longest accepted time from cancel to the op's
// return: one unit of work per thread (a GEMM task, an attention query
// block, a conv tile's GEMM task: a few ms on one core), with margin for a
// shared machine; the race detector slows the Go loops of a unit ~10×.
// The bound is the (within a second), not the typical figure (a few
// ms), so a loaded CI machine does not make the test flaky.
func cancelLatency() time.Duration {
	if raceEnabled {
		return 3 * time.Second
	}
	return time.Second
}

// runCancelled runs op on b with a context cancelled after delay, checks that
// op returns within cancelLatency of the cancel with ctx.Err() recorded and
// a placeholder of the right shape, then detaches the context and resets.
func runCancelled(t *testing.T, b *Backend, delay time.Duration, op func() compute.Tensor, shape ...int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.SetContext(ctx)
	before := runtime.NumGoroutine()
	type result struct {
		t  compute.Tensor
		at time.Time
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		out := op()
		done <- result{out, time.Now()}
	}()
	time.Sleep(delay)
	cancel()
	cancelled := time.Now()
	res := <-done
	lat := res.at.Sub(cancelled)
	t.Logf("returned %v after cancel (%v after start)", lat, res.at.Sub(start))
	if err := b.Err(); err != context.Canceled {
		t.Fatalf("Err() = %v, want context.Canceled (op finished before the cancel?)", err)
	}
	if lat > cancelLatency() {
		t.Errorf("returned %v after cancel, want ≤ %v", lat, cancelLatency())
	}
	if s := res.t.Shape(); len(s) != len(shape) || numel(s) != numel(shape) {
		t.Errorf("placeholder shape %v, want %v", s, shape)
	}
	if ct := res.t.(*Tensor); !ct.placeholder {
		t.Error("a cancelled op returned a real tensor")
	}
	// Later ops on the cancelled context fail fast with the same error,
	// even after ResetErr, until the context is replaced.
	b.ResetErr()
	b.Free(b.SiLU(b.FromHost([]float32{1}, 1)))
	if err := b.Err(); err != context.Canceled {
		t.Errorf("op after ResetErr on a cancelled context: Err() = %v", err)
	}
	b.SetContext(nil)
	b.ResetErr()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines before the cancelled op, %d after", before, after)
	}
}

// TestCancelMidOp cancels each long op part-way through (shapes of the DiT
// and the VAE at 1024², each ≥ 0.3 s on two cores) and checks that the
// backend is usable and correct afterwards.
func TestCancelMidOp(t *testing.T) {
	if testing.Short() {
		t.Skip("large ops")
	}
	b := New()
	// Start the worker pools (gemm's and this package's) so goroutine
	// counts are steady.
	{
		x := b.FromHost(make([]float32, 512*512), 512, 512)
		b.Free(b.MatMul(x, x, nil), b.Attention(x, x, x, 4, 4, 1, false), x)
	}

	t.Run("MatMul", func(t *testing.T) {
		// The DiT FFN up-projection at 2048 tokens, bf16 weight (zeros).
		const m, k, n = 2048, 3840, 10240
		x := b.FromHost(make([]float32, m*k), m, k)
		defer b.Free(x)
		w := b.Weight(&weights.Tensor{Name: "w1", DType: weights.BF16, Shape: []int{n, k}, Data: make([]byte, 2*n*k)})
		runCancelled(t, b, 50*time.Millisecond, func() compute.Tensor { return b.MatMul(x, w, nil) }, m, n)
	})
	t.Run("Attention", func(t *testing.T) {
		// DiT attention at 1024² (30 heads of 128, 4224 tokens), cancelled
		// during the key/value re-layout (~60 ms) and between query blocks.
		const l, d = 4224, 3840
		q := b.FromHost(make([]float32, l*d), l, d)
		defer b.Free(q)
		for _, delay := range []time.Duration{20 * time.Millisecond, 250 * time.Millisecond} {
			runCancelled(t, b, delay, func() compute.Tensor { return b.Attention(q, q, q, 30, 30, 0.088, false) }, l, d)
		}
	})
	t.Run("AttentionGEMMTiles", func(t *testing.T) {
		// dh = 48 takes the gemm-per-tile path.
		const l, d = 8192, 288
		q := b.FromHost(make([]float32, l*d), l, d)
		defer b.Free(q)
		runCancelled(t, b, 50*time.Millisecond, func() compute.Tensor { return b.Attention(q, q, q, 6, 6, 0.14, false) }, l, d)
	})
	t.Run("Conv3x3", func(t *testing.T) {
		// A VAE resnet conv at 512² (im2col in row tiles).
		const c, h = 128, 512
		x := b.FromHost(make([]float32, c*h*h), c, h, h)
		defer b.Free(x)
		w := b.Weight(&weights.Tensor{Name: "conv", DType: weights.BF16, Shape: []int{c, c, 3, 3}, Data: make([]byte, 2*c*c*9)})
		defer b.Free(w)
		runCancelled(t, b, 50*time.Millisecond, func() compute.Tensor { return b.Conv2D(x, w, nil, 1) }, c, h, h)
	})
	t.Run("Conv1x1", func(t *testing.T) {
		const ci, co, h = 512, 512, 256
		x := b.FromHost(make([]float32, ci*h*h), ci, h, h)
		defer b.Free(x)
		w := b.Weight(&weights.Tensor{Name: "conv", DType: weights.BF16, Shape: []int{co, ci, 1, 1}, Data: make([]byte, 2*co*ci)})
		defer b.Free(w)
		runCancelled(t, b, 50*time.Millisecond, func() compute.Tensor { return b.Conv2D(x, w, nil, 0) }, co, h, h)
	})

	// The backend works again: a live context and no context both give
	// the reference results.
	r := rand.New(rand.NewPCG(5, 6))
	const m, k, n = 37, 300, 129
	xv := randVec(r, m*k)
	wt, exact := weightOf(randVec(r, n*k), weights.BF16, n, k)
	want := make([]float32, m*n)
	gemm.Reference(want, xv, exact, true, nil, m, n, k)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []context.Context{ctx, nil} {
		b.SetContext(c)
		got := host(t, b, b.MatMul(b.FromHost(xv, m, k), b.Weight(wt), nil))
		checkClose(t, "MatMul after cancel", got, f64(want), 1e-5)
	}
}

// TestSetContext covers the registration rules: an already-done context
// fails the first op, replacing a context detaches the old one, and a
// deadline is reported as context.DeadlineExceeded.
func TestSetContext(t *testing.T) {
	b := New()
	x := b.FromHost([]float32{1, 2, 3}, 3)

	done, cancel := context.WithCancel(context.Background())
	cancel()
	b.SetContext(done)
	if y := b.SiLU(x); b.Err() != context.Canceled || !y.(*Tensor).placeholder {
		t.Fatalf("op on a done context: Err() = %v", b.Err())
	}
	b.SetContext(nil)
	b.ResetErr()

	old, cancelOld := context.WithCancel(context.Background())
	b.SetContext(old)
	b.SetContext(context.Background())
	cancelOld()
	time.Sleep(10 * time.Millisecond) // let a (wrongly) registered callback run
	if v := host(t, b, b.SiLU(x)); math.Abs(float64(v[0])-0.7310586) > 1e-6 {
		t.Errorf("SiLU(1) = %v", v[0])
	}

	dl, cancelDL := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelDL()
	b.SetContext(dl)
	<-dl.Done()
	time.Sleep(10 * time.Millisecond)
	b.Free(b.SiLU(x))
	if err := b.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err() = %v, want context.DeadlineExceeded", err)
	}
	b.SetContext(nil)
	b.ResetErr()
	host(t, b, b.SiLU(x))
}
