package gemm

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/zimage/zimage/weights"
)

// BFloat16 compute (MatMulBTBF16...): A is rounded to bfloat16 (nearest,
// ties to even) while it is packed, B is used as bfloat16 (exact for BF16
// weights, rounded otherwise), and the products accumulate in float32. With
// AVX512-BF16 the micro-kernel is VDPBF16PS on bf16 pairs along k (twice
// the float32 FMA rate); without it the same rounded operands run on the
// float32 kernels (same products, which are exact in float32, summed in a
// different order). Calls with at most gemvMaxM rows run the float32 GEMV:
// they are memory-bound, so rounding would gain nothing.

// bf16Kernel is the kernel MatMulBTBF16 uses; tests switch it with
// useBF16Kernel.
var bf16Kernel = pickBF16Kernel()

func pickBF16Kernel() kernel {
	if k, ok := archBF16Kernel(); ok {
		return k
	}
	return roundingKernel(active)
}

// roundingKernel is the float32 kernel k used on operands rounded to bf16.
func roundingKernel(k kernel) kernel {
	k.round = true
	k.name += "+bf16round"
	narrow := make([]kernel, len(k.narrow))
	for i, n := range k.narrow {
		n.round = true
		narrow[i] = n
	}
	k.narrow = narrow
	return k
}

// BF16KernelName reports the kernel MatMulBTBF16 uses: "avx512bf16"
// (VDPBF16PS) or a float32 kernel name with "+bf16round".
func BF16KernelName() string { return bf16Kernel.name }

// HasBF16Dot reports whether the bf16 GEMM runs on VDPBF16PS.
func HasBF16Dot() bool { return bf16Kernel.pairs }

// MatMulBTBF16 is MatMulBT computed in bfloat16 with float32 accumulation
// (see BFloat16 compute above).
func MatMulBTBF16(c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	return MatMulBTBF16Ctx(context.Background(), c, a, b, bt, bias, m, n, k)
}

// MatMulBTBF16Ctx is MatMulBTBF16 that gives up when ctx is done.
func MatMulBTBF16Ctx(ctx context.Context, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	if err := checkDims(m, n, k); err != nil {
		release()
		return err
	}
	switch bt {
	case weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2:
	default:
		release()
		return fmt.Errorf("%w %v for B (want F32, BF16, F16, F8_E4M3 or F8_E5M2)", ErrDType, bt)
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		release()
		return err
	}
	if need := n * k * bt.Size(); len(b) < need {
		release()
		return fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), need, n, k, bt)
	}
	runPrec(stop, true, c, a, newBSource(b, bt, n, k), bias, m, n, k)
	return finish(ctx, stop, release, nil)
}

// MatMulBTF32BF16Ctx is MatMulBTF32Ctx computed in bfloat16 with float32
// accumulation.
func MatMulBTF32BF16Ctx(ctx context.Context, c, a, b, bias []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	if err := checkDims(m, n, k); err != nil {
		release()
		return err
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		release()
		return err
	}
	if len(b) < n*k {
		release()
		return fmt.Errorf("%w: B has %d elements, want %d (%d×%d)", ErrShape, len(b), n*k, n, k)
	}
	runPrec(stop, true, c, a, bSource{kind: srcF32T, f32: b[:n*k], n: n, k: k}, bias, m, n, k)
	return finish(ctx, stop, release, nil)
}

// MatMulBF16Ctx is MatMulCtx (B float32 [k,n], not transposed) computed in
// bfloat16 with float32 accumulation.
func MatMulBF16Ctx(ctx context.Context, c, a, b []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	if err := checkDims(m, n, k); err != nil {
		release()
		return err
	}
	if err := checkLens(c, a, nil, m, n, k); err != nil {
		release()
		return err
	}
	if len(b) < n*k {
		release()
		return fmt.Errorf("%w: B has %d elements, want %d (%d×%d)", ErrShape, len(b), n*k, k, n)
	}
	runPrec(stop, true, c, a, bSource{kind: srcF32N, f32: b[:n*k], n: n, k: k}, nil, m, n, k)
	return finish(ctx, stop, release, nil)
}

// toBF16 rounds f to bfloat16 bits (nearest, ties to even; NaN stays NaN).
func toBF16(f float32) uint32 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return b>>16 | 0x0040
	}
	return (b + 0x7fff + (b>>16)&1) >> 16
}

// roundBF16 rounds f to the nearest bfloat16 value, as a float32.
func roundBF16(f float32) float32 { return math.Float32frombits(toBF16(f) << 16) }

// roundPanel rounds every value of a packed panel to bf16 in place.
func roundPanel(p []float32) {
	for i, v := range p {
		p[i] = roundBF16(v)
	}
}

// words views a float32 scratch slice as uint32 words (packed bf16 pairs).
func words(p []float32) []uint32 {
	if len(p) == 0 {
		return nil
	}
	return unsafeU32(p)
}

// packAPanelPairs packs rows ibase.. of A over k range p0..p0+kb as bf16
// pairs: panel[q*mr+ii] = bf16(A(i, p0+2q)) | bf16(A(i, p0+2q+1))<<16,
// with zeros past kb and past rows.
func packAPanelPairs(panel []float32, a []float32, lda, ibase, rows, p0, kb, mr int) {
	out := words(panel)
	kq := (kb + 1) / 2
	if rows < mr {
		clear(out[:kq*mr])
	}
	done := 0 // k values packed by packPanel6
	if rows == 6 && mr == 6 {
		done = packPanel6(out, a, lda, ibase*lda+p0, kb)
	}
	for ii := 0; ii < rows && done < kb; ii++ {
		packRowPairs(out[done/2*mr+ii:], a[(ibase+ii)*lda+p0+done:][:kb-done], mr)
	}
}

// packRowPairsGo is packRowPairs in Go: out[q*stride] = bf16(row[2q]) |
// bf16(row[2q+1])<<16, the last high half zero when len(row) is odd.
func packRowPairsGo(out []uint32, row []float32, stride int) {
	q := 0
	for ; 2*q+1 < len(row); q++ {
		out[q*stride] = toBF16(row[2*q]) | toBF16(row[2*q+1])<<16
	}
	if 2*q < len(row) {
		out[q*stride] = toBF16(row[2*q])
	}
}

// packBPairs packs columns j0..j0+nb of a transposed B over k range
// p0..p0+kb (p0 even) as bf16 pair micro-panels of nr columns: panel w
// holds word[w*nr*kq + q*nr + jj] = the pair (p0+2q, p0+2q+1) of row
// j0+w*nr+jj, zero past kb and nb. A bf16 B is a matrix of such words
// already, so whole 16×16 tiles are transposed as 32-bit values in
// assembly.
func packBPairs(dst []float32, src *bSource, j0, nb, p0, kb, nr int) {
	kq := (kb + 1) / 2
	for w := 0; w*nr < nb; w++ {
		cols := min(nr, nb-w*nr)
		panel := dst[w*nr*kq : (w+1)*nr*kq]
		jbase := j0 + w*nr
		if cols < nr {
			clear(panel)
		}
		if src.kind == srcF32N {
			packPairsN(panel, nr, src, jbase, cols, p0, kb)
			continue
		}
		if src.kind == srcConv {
			packPairsConv(panel, nr, src, jbase, cols, p0, kb)
			continue
		}
		if src.kind == srcQuantT {
			packPairsQuant(panel, nr, src, jbase, cols, p0, kb)
			continue
		}
		if src.kind == srcF32T && usePackAsm {
			// float32 rows (weights widened or merged in memory): each row
			// converted and spread over the panel's pair words.
			out := words(panel)
			for jj := 0; jj < cols; jj++ {
				packRowPairs(out[jj:], src.f32[(jbase+jj)*src.k+p0:][:kb], nr)
			}
			continue
		}
		rows, qs := 0, 0
		if src.kind == srcBytesT && src.dt == weights.BF16 {
			rows, qs = transposePairs(panel, nr, src, jbase, cols, p0, kb/2)
		}
		packPairsScalar(panel, nr, src, jbase, 0, rows, qs, kq, p0, kb)
		packPairsScalar(panel, nr, src, jbase, rows, cols, 0, kq, p0, kb)
	}
}

// packPairsN packs a pair panel from a float32 B stored [k, n]: the two
// values of a word come from consecutive rows.
func packPairsN(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) {
	out := words(panel)
	n := src.n
	for q := 0; 2*q < kb; q++ {
		r0 := src.f32[(p0+2*q)*n+jbase:][:cols]
		var r1 []float32
		if 2*q+1 < kb {
			r1 = src.f32[(p0+2*q+1)*n+jbase:][:cols]
		}
		pairInto(out[q*nr:q*nr+cols], r0, r1)
	}
}

// pairInto writes o[j] = bf16(r0[j]) | bf16(r1[j])<<16, or bf16(r0[j])
// alone when r1 is nil (an odd last k).
func pairInto(o []uint32, r0, r1 []float32) {
	if r1 == nil {
		for jj := range o {
			o[jj] = toBF16(r0[jj])
		}
		return
	}
	for jj := pairRows(o, r0, r1); jj < len(o); jj++ {
		o[jj] = toBF16(r0[jj]) | toBF16(r1[jj])<<16
	}
}

// quantPairChunk is how many k values of a quantized panel are dequantized
// at a time before their rounding to pairs: a multiple of every block size
// (32, 256), and a float32 scratch of nr×256 values stays in L2.
const quantPairChunk = 256

// packPairsQuant packs a pair panel from ggml blocks: a chunk of the panel
// is dequantized as packQuantPanel does for the float32 engine (same
// values), then each pair of its k rows is rounded into pair words.
func packPairsQuant(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) {
	out := words(panel)
	buf := getBuf(nr * quantPairChunk)
	defer putBuf(buf)
	for c0 := 0; c0 < kb; c0 += quantPairChunk {
		cb := min(quantPairChunk, kb-c0)
		tmp := (*buf)[:nr*cb]
		packQuantPanel(tmp, nr, src, jbase, cols, p0+c0, cb)
		for q := 0; 2*q < cb; q++ {
			var r1 []float32
			if 2*q+1 < cb {
				r1 = tmp[(2*q+1)*nr:][:cols]
			}
			pairInto(out[(c0/2+q)*nr:][:cols], tmp[2*q*nr:][:cols], r1)
		}
	}
}

// packPairsScalar fills the pair words of columns [jlo, jhi) and pairs
// [qlo, qhi) of a panel.
func packPairsScalar(panel []float32, nr int, src *bSource, jbase, jlo, jhi, qlo, qhi, p0, kb int) {
	if jlo >= jhi || qlo >= qhi {
		return
	}
	out := words(panel)
	for jj := jlo; jj < jhi; jj++ {
		j := jbase + jj
		if src.kind == srcBytesT && src.dt == weights.BF16 {
			row := src.raw[(j*src.k+p0)*2:][:kb*2]
			for q := qlo; q < qhi; q++ {
				lo := uint32(binary.LittleEndian.Uint16(row[4*q:]))
				var hi uint32
				if 2*q+1 < kb {
					hi = uint32(binary.LittleEndian.Uint16(row[4*q+2:]))
				}
				out[q*nr+jj] = lo | hi<<16
			}
			continue
		}
		for q := qlo; q < qhi; q++ {
			lo := toBF16(bAt(src, j, p0+2*q))
			var hi uint32
			if 2*q+1 < kb {
				hi = toBF16(bAt(src, j, p0+2*q+1))
			}
			out[q*nr+jj] = lo | hi<<16
		}
	}
}

// runPrec is run with a precision: bf16 selects bf16Kernel for the blocked
// path.
func runPrec(stop *atomic.Bool, bf16 bool, c, a []float32, src bSource, bias []float32, m, n, k int) {
	if !bf16 || m <= gemvMaxM || k == 0 || m == 0 || n == 0 {
		run(stop, c, a, src, bias, m, n, k)
		return
	}
	c = c[:m*n]
	threads := numThreads()
	if m*n*k < inlineFlops {
		threads = 1
	}
	kern := bf16Kernel
	if m < kern.mr && m <= len(kern.narrow) {
		kern = kern.narrow[m-1]
	}
	blocked(kern, threads, stop, c, a, &src, bias, m, n, k)
}
