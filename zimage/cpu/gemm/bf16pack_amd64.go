//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

// pairsStride writes dst[q*stride] = bf16(src[2q]) | bf16(src[2q+1])<<16
// for q < (kb+1)/2 (src[kb] read as zero when kb is odd), rounding as
// toBF16 does.
//
//go:noescape
func pairsStride(dst *uint32, src *float32, kb, stride int)

// pairRowsInt writes dst[j] = bf16(r0[j]) | bf16(r1[j])<<16 for j < n,
// rounding as toBF16 does.
//
//go:noescape
func pairRowsInt(dst *uint32, r0, r1 *float32, n int)

// pairsPanel6 packs 6 rows of a (row stride lda) over nblk blocks of 32
// values as a 6-row pair panel: dst[q*6+r] = pair q of row r.
//
//go:noescape
func pairsPanel6(dst *uint32, a *float32, lda, nblk int)

// usePackAsm enables the AVX-512 bf16 pair packing (tests turn it off to
// cover the Go loops).
var usePackAsm = hasPackAsm

// hasPackAsm says whether the CPU runs the packing assembly.
var hasPackAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// packRowPairs writes out[q*stride] = bf16(row[2q]) | bf16(row[2q+1])<<16
// for q < (len(row)+1)/2, the last high half zero when len(row) is odd.
func packRowPairs(out []uint32, row []float32, stride int) {
	if len(row) == 0 {
		return
	}
	if !usePackAsm {
		packRowPairsGo(out, row, stride)
		return
	}
	_ = out[(len(row)-1)/2*stride]
	pairsStride(&out[0], &row[0], len(row), stride)
}

// pairRows writes out[j] = bf16(r0[j]) | bf16(r1[j])<<16 for every j and
// returns len(out) (0 where it leaves the work to the caller's Go loop).
func pairRows(out []uint32, r0, r1 []float32) int {
	n := len(out)
	if !usePackAsm || n == 0 {
		return 0
	}
	_, _ = r0[n-1], r1[n-1]
	pairRowsInt(&out[0], &r0[0], &r1[0], n)
	return n
}

// packPanel6 packs the leading whole 32-value blocks of kb values of 6 rows
// of a starting at a[off] (row stride lda) into a 6-row pair panel, and
// returns how many values per row it packed.
func packPanel6(out []uint32, a []float32, lda, off, kb int) int {
	nblk := kb / 32
	if !usePackAsm || nblk == 0 {
		return 0
	}
	_ = out[nblk*16*6-1]
	_ = a[off+5*lda+32*nblk-1]
	pairsPanel6(&out[0], &a[off], lda, nblk)
	return 32 * nblk
}

// cvtBF16Int writes dst[i] = bf16(src[i]) for i < n.
//
//go:noescape
func cvtBF16Int(dst *uint16, src *float32, n int)

// pairTapsInt writes dst[q*nr+j] = img[base+offs[2q]+j] |
// img[base+offs[2q+1]+j]<<16 for q < nq, j < n.
//
//go:noescape
func pairTapsInt(dst *uint32, img *uint16, offs *int, nq, n, nr, base int)

// cvtBF16 writes dst[i] = bf16(src[i]) for every i, rounding as toBF16.
func cvtBF16(dst []uint16, src []float32) {
	if !usePackAsm || len(src) == 0 {
		cvtBF16Go(dst, src)
		return
	}
	_ = dst[len(src)-1]
	cvtBF16Int(&dst[0], &src[0], len(src))
}

// pairTaps writes out[q*nr+j] = img[base+offs[2q]+j] |
// img[base+offs[2q+1]+j]<<16 for q < len(offs)/2 and j < n.
func pairTaps(out []uint32, img []uint16, offs []int, n, nr, base int) {
	nq := len(offs) / 2
	if !usePackAsm || nq == 0 || n == 0 {
		pairTapsGo(out, img, offs, n, nr, base)
		return
	}
	_ = out[(nq-1)*nr+n-1]
	for _, o := range offs[:2*nq] {
		if o+base < 0 || o+base+n > len(img) {
			panic("gemm: conv tap outside the image")
		}
	}
	pairTapsInt(&out[0], &img[0], &offs[0], nq, n, nr, base)
}

// addScalarInt adds v to dst[i] for i < n.
//
//go:noescape
func addScalarInt(dst *float32, v float32, n int)

// addScalar adds v to every value of row.
func addScalar(row []float32, v float32) {
	if !hasPackAsm || len(row) == 0 {
		addScalarGo(row, v)
		return
	}
	addScalarInt(&row[0], v, len(row))
}
