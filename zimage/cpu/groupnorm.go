package cpu

import "math"

// groupNormByGroup reports whether GroupNorm runs group by group
// (groupNormGroups): when there are groups enough to keep every thread busy
// and a channel is a whole number of 16-value vectors, so every vector run
// starts where the channel-parallel passes start theirs and the results are
// bit-identical.
func groupNormByGroup(threads, groups, hw int) bool {
	return groups >= 2*threads && hw%16 == 0
}

// groupNormGroups is groupNorm's arithmetic (the same per-channel block
// sums, group totals in channel order, affine and SiLU runs) with the three
// passes over a group done back to back, while the group is still in cache:
// large maps then stream from memory once instead of three times.
func groupNormGroups(threads int, out, xv, wv, bv []float32, groups, cg, hw int, eps float32, silu bool) {
	n := float64(cg * hw)
	parallelFor(threads, groups, 1, func(lo, hi int) {
		sums := make([]float64, cg)
		for g := lo; g < hi; g++ {
			x0 := g * cg * hw
			// Mean: per-channel Σx over sumBlockLen blocks, then the
			// group total in channel order.
			for k := range cg {
				row := xv[x0+k*hw : x0+(k+1)*hw]
				var s float64
				for i := 0; i < hw; i += sumBlockLen {
					s += sumBlock(row[i:min(i+sumBlockLen, hw)])
				}
				sums[k] = s
			}
			var t float64
			for _, v := range sums {
				t += v
			}
			mean := float32(t / n)
			// Variance around the mean, the same way; the group is in
			// cache now, so sqDevRun may run four blocks' chains at once
			// (on the first, streaming pass that costs the prefetcher
			// more than it gains).
			for k := range cg {
				sums[k] = sqDevRun(xv[x0+k*hw:x0+(k+1)*hw], mean)
			}
			t = 0
			for _, v := range sums {
				t += v
			}
			inv := 1 / math.Sqrt(t/n+float64(eps))
			// y = (x-mean)·(inv·w) + b, then SiLU on runs of siluChunk
			// values from the group's start.
			if !silu {
				for k := range cg {
					ch := g*cg + k
					affine(out[ch*hw:(ch+1)*hw], xv[ch*hw:(ch+1)*hw], mean, float32(inv*float64(wv[ch])), bv[ch])
				}
				continue
			}
			end := x0 + cg*hw
			for i := x0; i < end; i += siluChunk {
				j := min(i+siluChunk, end)
				for p := i; p < j; {
					ch := p / hw
					q := min(j, (ch+1)*hw)
					affine(out[p:q], xv[p:q], mean, float32(inv*float64(wv[ch])), bv[ch])
					p = q
				}
				siluVec(out[i:j], out[i:j])
			}
		}
	})
}
