package gemm

// Exported bf16 pair conversions for the bf16 attention (zimage/cpu), which
// packs its operands like the GEMM does: a pair word holds two bf16 values
// (the first in the low half), rounded as toBF16 (nearest, ties to even,
// NaN quieted, denormals kept), in AVX-512 where available.

// PackBF16Pairs writes dst[q*stride] = bf16(src[2q]) | bf16(src[2q+1])<<16
// for q < (len(src)+1)/2, the last high half zero when len(src) is odd.
func PackBF16Pairs(dst []uint32, src []float32, stride int) {
	packRowPairs(dst, src, stride)
}

// PairBF16Rows writes dst[j] = bf16(r0[j]) | bf16(r1[j])<<16 for j <
// len(dst).
func PairBF16Rows(dst []uint32, r0, r1 []float32) {
	for j := pairRows(dst, r0, r1); j < len(dst); j++ {
		dst[j] = toBF16(r0[j]) | toBF16(r1[j])<<16
	}
}

// Transpose16 writes the 16 rows of src (n words each, lds words apart) as
// n rows of 16 words, ldd words apart, at dst (in AVX-512 when n is a
// multiple of 16, else in Go). The bf16 attention lays its keys out this way: whole 64-byte rows written
// at once, where storing each key's words down a column touched a cache
// line per word.
func Transpose16(dst []uint32, ldd int, src []uint32, lds, n int) {
	if n <= 0 {
		return
	}
	_, _ = dst[(n-1)*ldd+15], src[15*lds+n-1]
	if n%16 == 0 && transpose16Asm(dst, ldd, src, lds, n) {
		return
	}
	for w := range n {
		row := dst[w*ldd : w*ldd+16]
		for c := range row {
			row[c] = src[c*lds+w]
		}
	}
}

// aPackInline is the A block size (values) up to which the assembly bf16
// pair packing (~0.1 ns a value) runs on the calling goroutine alone: a
// helper would take longer to wake than the work takes, and the caller
// would then wait for it before the multiplication wakes it again.
const aPackInline = 1 << 20

// aPackThreads is the thread count for packing an mb×kb A block.
func aPackThreads(kern kernel, threads, mb, kb int) int {
	if kern.pairs && usePackAsm && mb*kb <= aPackInline {
		return 1
	}
	return threads
}
