package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGroupNormByGroup checks that the group-by-group GroupNorm and
// GroupNormSiLU (groupNormGroups) match the channel-parallel passes bit for
// bit: a backend with more threads than groups/2 takes the channel path.
func TestGroupNormByGroup(t *testing.T) {
	for _, c := range []struct{ c, h, w, groups int }{
		{8, 4, 4, 2}, {16, 40, 40, 4}, {8, 64, 72, 4}, {32, 8, 6, 8}, {64, 16, 48, 32}, {12, 12, 12, 6},
	} {
		r := rand.New(rand.NewPCG(9, uint64(c.c*c.h)))
		xv := randVec(r, c.c*c.h*c.w)
		for i := range xv {
			xv[i] = xv[i]*0.5 + 3
		}
		wv, bv := randVec(r, c.c), randVec(r, c.c)
		chanThreads := c.groups/2 + 1
		if groupNormByGroup(chanThreads, c.groups, c.h*c.w) || !groupNormByGroup(1, c.groups, c.h*c.w) {
			t.Fatalf("%v: paths not selected as the test expects", c)
		}
		for _, silu := range []bool{false, true} {
			run := func(threads int) []float32 {
				return groupNormOn(t, threads, silu, xv, wv, bv, c.c, c.h, c.w, c.groups)
			}
			want := run(chanThreads)
			for _, threads := range []int{1, 2} {
				if !groupNormByGroup(threads, c.groups, c.h*c.w) {
					continue
				}
				got := run(threads)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s silu=%v threads=%d [%d]: got %v, want %v",
							fmt.Sprint(c), silu, threads, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestGroupNormThreadInvariant checks that GroupNorm and GroupNormSiLU give
// the same bits with any thread count, also when a channel is not a whole
// number of vectors (the channel-parallel passes then cut channels at
// thread-dependent points).
func TestGroupNormThreadInvariant(t *testing.T) {
	for _, c := range []struct{ c, h, w, groups int }{
		{8, 7, 9, 4}, {32, 5, 5, 32}, {64, 13, 11, 32}, {6, 3, 1, 2}, {16, 40, 40, 4},
		{64, 63, 65, 32}, {96, 33, 31, 32}, // enough values for the passes to run in parallel
	} {
		r := rand.New(rand.NewPCG(11, uint64(c.c*c.w)))
		xv := randVec(r, c.c*c.h*c.w)
		wv, bv := randVec(r, c.c), randVec(r, c.c)
		for _, silu := range []bool{false, true} {
			run := func(threads int) []float32 {
				return groupNormOn(t, threads, silu, xv, wv, bv, c.c, c.h, c.w, c.groups)
			}
			want := run(1)
			for _, threads := range []int{2, 3, 4, 7} {
				got := run(threads)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v silu %v, %d threads: element %d = %v, 1 thread gives %v", c, silu, threads, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// groupNormOn runs GroupNorm (or GroupNormSiLU) of x [c, h, w] with gain w
// and bias b on a backend of threads threads.
func groupNormOn(t *testing.T, threads int, silu bool, xv, wv, bv []float32, c, h, w, groups int) []float32 {
	t.Helper()
	b := New(WithThreads(threads))
	x, gain, bias := b.FromHost(xv, c, h, w), b.FromHost(wv, c), b.FromHost(bv, c)
	if silu {
		return host(t, b, b.GroupNormSiLU(x, gain, bias, groups, 1e-6))
	}
	return host(t, b, b.GroupNorm(x, gain, bias, groups, 1e-6))
}
