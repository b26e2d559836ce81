package gemm

import (
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestBPrefetchSteps walks prefetches of ragged blocks up to the last row
// of B and the last value of k (a bounds check fails loudly) and checks
// that the steps cover each block's rows exactly once.
func TestBPrefetchSteps(t *testing.T) {
	defer func(u bool) { usePrefetch = u }(usePrefetch)
	usePrefetch = true
	const n, k = 101, 70
	srcs := []bSource{
		newBSource(make([]byte, n*k*2), weights.BF16, n, k),
		newBSource(make([]byte, n*k), weights.F8E4M3, n, k),
		{kind: srcF32T, f32: make([]float32, n*k), n: n, k: k},
	}
	for _, src := range srcs {
		for _, blk := range [][4]int{{0, n, 0, k}, {37, 64, 6, 64}, {100, 1, 69, 1}, {5, 3, 0, 70}} {
			for steps := 1; steps <= 9; steps++ {
				pf, ok := newBPrefetch(&src, blk[0], blk[1], blk[2], blk[3], steps)
				if !ok {
					t.Fatalf("no prefetch for %v", src.kind)
				}
				calls := 0
				for ; pf.j < pf.end; calls++ {
					pf.step()
				}
				if pf.j != blk[0]+blk[1] || calls > steps {
					t.Fatalf("block %v in %d steps: ended at row %d after %d calls", blk, steps, pf.j, calls)
				}
			}
		}
	}
	conv := bSource{kind: srcConv}
	if _, ok := newBPrefetch(&conv, 0, 1, 0, 1, 1); ok {
		t.Fatal("prefetch for a float32 implicit convolution")
	}
	// A bf16 convolution walks the channels of its k block up to the last
	// image row and column (a bounds check fails loudly).
	for _, g := range []convGeom{{ci: 5, h: 6, w: 70, kh: 3, kw: 3, pad: 1, ho: 6, wo: 70}, {ci: 3, h: 4, w: 5, kh: 3, kw: 3, pad: 0, ho: 2, wo: 3}} {
		img, done := convImageBF16(nil, 1, make([]float32, g.ci*g.h*g.w), &g)
		conv := bSource{kind: srcConv, conv: &g, bf16: img, n: g.ho * g.wo, k: g.ci * 9}
		for _, blk := range [][4]int{{0, conv.n, 0, conv.k}, {conv.n - 7, 7, conv.k - 10, 10}, {3, min(150, conv.n-3), 9, 1}} {
			for steps := 1; steps <= 4; steps++ {
				pf, ok := newBPrefetch(&conv, blk[0], blk[1], blk[2], blk[3], steps)
				if !ok {
					t.Fatal("no prefetch for a bf16 convolution")
				}
				calls := 0
				for ; pf.j < pf.end; calls++ {
					pf.step()
				}
				if pf.j != (blk[2]+blk[3]-1)/9+1 || calls > steps {
					t.Fatalf("%+v block %v in %d steps: ended at channel %d after %d calls", g, blk, steps, pf.j, calls)
				}
			}
		}
		done()
	}
	// The task after the last of the last k block has nothing to prefetch.
	src := srcs[0]
	if _, ok := nextBlockPrefetch(&src, 7, 2, 4, 2, 10, 16, n, 64, 6, 64, k, 3); ok {
		t.Fatal("prefetch past the last k block")
	}
	if pf, ok := nextBlockPrefetch(&src, 7, 2, 4, 2, 10, 16, n, 0, 64, 64, k, 3); !ok || pf.p0 != 64 || pf.kb != 6 {
		t.Fatalf("next k block prefetch = %+v, %v", pf, ok)
	}
}
