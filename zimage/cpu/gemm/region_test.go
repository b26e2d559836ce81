package gemm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/zimage/zimage/weights"
)

// sameBitsUnder runs float32 and bf16 products from raw bytes, a pre-packed
// and a two-weight (packed + raw) bf16 product of an m×k A, with bias, once
// after on() and once after off(), and wants the same bits from both.
func sameBitsUnder(t *testing.T, r *rand.Rand, m, n, k int, what string, on, off func()) {
	t.Helper()
	ctx := context.Background()
	a := randSlice(r, m*k)
	bias := randSlice(r, n)
	raw, _ := encode(t, randSlice(r, n*k), weights.BF16)
	raw2, _ := encode(t, randSlice(r, 2*n*k), weights.BF16)
	p, err := PackBF16(raw, weights.BF16, n, k)
	if err != nil {
		t.Fatal(err)
	}
	rawP, err := RawBF16(raw2, weights.BF16, 2*n, k)
	if err != nil {
		t.Fatal(err)
	}
	runs := []struct {
		name string
		size int
		run  func(c []float32) error
	}{
		{"f32", m * n, func(c []float32) error { return MatMulBT(c, a, raw, weights.BF16, bias, m, n, k) }},
		{"bf16", m * n, func(c []float32) error { return MatMulBTBF16(c, a, raw, weights.BF16, bias, m, n, k) }},
		{"packed", m * n, func(c []float32) error { return MatMulBTBF16PackedCtx(ctx, c, a, p, bias, m, n, k) }},
		{"multi", 3 * m * n, func(c []float32) error {
			return MatMulBTBF16MultiCtx(ctx, [][]float32{c[:m*n], c[m*n:]}, a, []*BF16Packed{p, rawP}, [][]float32{bias, nil}, m, k)
		}},
	}
	for _, rn := range runs {
		got, want := make([]float32, rn.size), make([]float32, rn.size)
		on()
		if err := rn.run(got); err != nil {
			t.Fatal(err)
		}
		off()
		if err := rn.run(want); err != nil {
			t.Fatal(err)
		}
		sameBits(t, fmt.Sprintf("%s: %s %d×%d×%d", what, rn.name, m, n, k), got, want)
	}
}

// TestOneRegionSameBits checks forBlocks's one-region mode (every k block
// of a one-block A packed up front, each task running its k blocks in
// order) against the per-k-block regions, bit for bit, on ragged shapes
// with three threads.
func TestOneRegionSameBits(t *testing.T) {
	defer func(kc, ak int) { kcMax, allKMax = kc, ak }(kcMax, allKMax)
	kcMax = 64
	SetThreads(3)
	defer SetThreads(0)
	r := rand.New(rand.NewPCG(11, 12))
	before := oneRegions.Load()
	for _, sh := range []struct{ m, n, k int }{{7, 33, 200}, {50, 100, 129}, {130, 70, 257}, {20, 64, 65}} {
		sameBitsUnder(t, r, sh.m, sh.n, sh.k, "one region",
			func() { allKMax = 4 << 20 }, func() { allKMax = 0 })
	}
	if oneRegions.Load() == before {
		t.Error("no product ran in one region")
	}
}

// TestJoinSameBits checks that tasks sharing their rows with threads that
// ran out of tasks (joinBoard) give the bits of the same products without
// joining, with 2–4 threads on shapes whose tasks end unevenly, three
// times each (who joins what varies from run to run).
func TestJoinSameBits(t *testing.T) {
	defer func(v bool) { useJoin = v }(useJoin)
	defer SetThreads(0)
	r := rand.New(rand.NewPCG(13, 14))
	before := joined.Load()
	defer func() {
		if joined.Load() == before {
			t.Error("no thread joined another's task")
		}
	}()
	for _, th := range []int{2, 3, 4} {
		SetThreads(th)
		for _, sh := range []struct{ m, n, k int }{{61, 200, 96}, {130, 333, 64}, {300, 1024, 130}, {17, 70, 2500}} {
			for range 3 {
				sameBitsUnder(t, r, sh.m, sh.n, sh.k, fmt.Sprintf("join, %d threads", th),
					func() { useJoin = true }, func() { useJoin = false })
			}
		}
	}
}

// TestRowCursorClaim: concurrent claims hand out every micro-panel row of
// a block exactly once, in whole mr-row panels but the ragged last, and a
// lone claimer takes several panels at a time.
func TestRowCursorClaim(t *testing.T) {
	for _, sh := range []struct{ mr, mb int }{{6, 320}, {6, 5}, {6, 6}, {4, 1057}, {6, 48}} {
		var c rowCursor
		var mu sync.Mutex
		seen := make([]int, sh.mb)
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					lo, hi := c.claim(sh.mr, sh.mb)
					if lo >= sh.mb {
						return
					}
					if lo%sh.mr != 0 || hi <= lo || hi > sh.mb || ((hi-lo)%sh.mr != 0 && hi != sh.mb) {
						t.Errorf("mr %d mb %d: claim [%d, %d)", sh.mr, sh.mb, lo, hi)
						return
					}
					mu.Lock()
					for i := lo; i < hi; i++ {
						seen[i]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("mr %d mb %d: row %d handed out %d times", sh.mr, sh.mb, i, n)
			}
		}
	}
	var c rowCursor
	if lo, hi := c.claim(6, 320); lo != 0 || hi != 6*claimMax {
		t.Fatalf("a lone claimer of 54 panels got [%d, %d), want [0, %d)", lo, hi, 6*claimMax)
	}
}
