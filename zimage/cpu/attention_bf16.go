package cpu

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// bf16 attention (WithBF16 on a CPU with AVX512-BF16): the same
// FlashAttention tiling as attnTileFast, with Q, K, P and V rounded to
// bfloat16 (nearest, ties to even) and both products (QKᵀ and PV) on
// VDPBF16PS with float32 accumulation. Scores, the softmax, the running
// max/sum and the output stay float32. Operands are bf16 pairs: one uint32
// word holds two consecutive values along the product's reduction axis
// (head dim for QKᵀ, keys for PV).

// bf16Bits rounds f to bfloat16 (nearest, ties to even; NaN stays NaN).
func bf16Bits(f float32) uint32 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return b>>16 | 0x0040
	}
	return (b + 0x7fff + (b>>16)&1) >> 16
}

// toBF16PairsGo is toBF16Pairs in Go.
func toBF16PairsGo(dst []uint32, src []float32) {
	n := len(src)
	for c := 0; c < n/2; c++ {
		dst[c] = pair(src[2*c], src[2*c+1])
	}
	if n%2 == 1 {
		dst[n/2] = bf16Bits(src[n-1])
	}
}

// pair packs two values as one bf16 pair word (lo first along the axis).
func pair(lo, hi float32) uint32 { return bf16Bits(lo) | bf16Bits(hi)<<16 }

// attnBkMaxBF16 bounds the bf16 engine's key block for heads up to 128
// wide. The keys are cut into balanced blocks of at most this many (a
// multiple of 64), not the float32 engine's fixed attnBk: a 256²
// generation's 320 keys then make one block instead of 256 + 64, whose
// short second pass (its rescaling, a 64-key score tile, a 32-pair P·V)
// cost ~10% of the attention. The tile's working set stays in a 1 MB L2:
// scores 120×512 float32, probabilities, output accumulators, a key and a
// value block, ~700 KB at dh = 128. Wider heads (the VAE's one head of up
// to 512) keep blocks of at most attnBk: their key and value blocks are
// 4·dh bytes a key, and 512 keys of dh = 512 would not fit.
const attnBkMaxBF16 = 512

// keyBlockBF16 returns the bf16 engine's key block for lk keys of width dh.
func keyBlockBF16(lk, dh int) int {
	most := attnBkMaxBF16
	if dh > 128 {
		most = attnBk
	}
	n := (lk + most - 1) / most
	return ((lk+n-1)/n + 63) / 64 * 64
}

// transposeKeysBF16 writes k [L, H·dh] as dst [H, nkb, dh/2, kb+16] words:
// block b of head g holds word(c, j) = (key b·kb+j)[2c, 2c+1], zero past
// the last key up to the block's last 64-key tile (the kernel reads no
// further). Each 16 keys' pairs are converted into a small buffer and
// transposed into place as whole rows (gemm.Transpose16).
func transposeKeysBF16(threads int, stop *atomic.Bool, dst []uint32, k []float32, l, h, dh, kb, nkb int) {
	dq := dh / 2
	ld := kb + 16
	// A task converts one key block of up to 8 heads, 16 keys at a time
	// for every head of the group: the 16 key rows are read whole (8·dh
	// values each), and the block being written stays in L2.
	const hg = 8
	ng := (h + hg - 1) / hg
	parallelFor(threads, ng*nkb, 1, func(lo, hi int) {
		tp := keyTmpPool.Get().(*[]uint32)
		defer keyTmpPool.Put(tp)
		if cap(*tp) < hg*16*dq {
			*tp = make([]uint32, hg*16*dq)
		}
		tmp := (*tp)[:hg*16*dq] // [head][key][dq]
		for t := lo; t < hi; t++ {
			if stop.Load() {
				return
			}
			g0, b := t/nkb*hg, t%nkb
			g1 := min(g0+hg, h)
			j0, j1 := b*kb, min(b*kb+kb, l)
			bkp := (j1 - j0 + 63) / 64 * 64
			for jj := 0; jj < bkp; jj += 16 {
				// Each key's row of the group's heads, read front to back.
				for r := range 16 {
					for g := g0; g < g1; g++ {
						row := tmp[((g-g0)*16+r)*dq : ((g-g0)*16+r+1)*dq]
						if j := j0 + jj + r; j < j1 {
							gemm.PackBF16Pairs(row, k[(j*h+g)*dh:(j*h+g+1)*dh], 1)
						} else {
							clear(row)
						}
					}
				}
				for g := g0; g < g1; g++ {
					blk := dst[(g*nkb+b)*dq*ld : (g*nkb+b+1)*dq*ld]
					gemm.Transpose16(blk[jj:], ld, tmp[(g-g0)*16*dq:(g-g0+1)*16*dq], dq, dq)
				}
			}
		}
	})
}

// keyTmpPool holds transposeKeysBF16's conversion buffers (16 keys of up
// to 8 heads).
var keyTmpPool = sync.Pool{New: func() any { return new([]uint32) }}

// splitValuesBF16 writes v [L, H·dh] as dst [H, ceil(L/2), dh] words:
// word(c, d) = (v[2c, d], v[2c+1, d]) of head g, the high half zero past L.
func splitValuesBF16(threads int, stop *atomic.Bool, dst []uint32, v []float32, l, h, dh int) {
	lq := (l + 1) / 2
	zeros := make([]float32, dh) // the row past an odd L
	// A task is a range of row pairs, each pair read front to back once
	// for every head (reading one head's 512 bytes per row at the row
	// stride left the prefetchers behind).
	parallelFor(threads, lq, max(1, ewGrain/(2*h*dh)), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			if stop.Load() {
				return
			}
			for g := range h {
				out := dst[(g*lq+c)*dh : (g*lq+c+1)*dh]
				r0, r1 := v[(2*c*h+g)*dh:(2*c*h+g+1)*dh], zeros[:dh]
				if 2*c+1 < l {
					r1 = v[((2*c+1)*h+g)*dh : ((2*c+1)*h+g+1)*dh]
				}
				gemm.PairBF16Rows(out, r0, r1)
			}
		}
	})
}

// scaleQueriesBF16 writes q [L, H·dh] times scale as dst [H, lq6, dh/2]
// pair words, rows L..lq6 zero (the tiles' padding). One pass in memory
// order: the tiles used to convert their own rows, reading a head's 512
// bytes per row at a 15 KB stride, which the prefetchers follow badly.
func scaleQueriesBF16(threads int, stop *atomic.Bool, dst []uint32, q []float32, l, lq6, h, dh int, scale float32) {
	dq := dh / 2
	parallelFor(threads, l, max(1, ewGrain/(h*dh)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if stop.Load() {
				return
			}
			for g := range h {
				scaleToBF16Pairs(dst[(g*lq6+i)*dq:(g*lq6+i+1)*dq], q[(i*h+g)*dh:(i*h+g+1)*dh], scale)
			}
		}
	})
	for g := range h {
		clear(dst[(g*lq6+l)*dq : (g*lq6+lq6)*dq])
	}
}

// attnScratchBF16 holds a task's scores [bq6, kb] and probabilities as
// pair words [bq6, kb/2] (kb ≤ attnBkMaxBF16).
type attnScratchBF16 struct {
	s []float32
	p []uint32
}

// attnTileBF16 is attnTileFast in bf16 with key blocks of kb: kt is this
// head's key blocks [nkb, dh/2, kb+16] and vp its value pairs
// [ceil(Lk/2), dh], both words.
//
// qp holds the tile's scaled query pairs [bq6, dh/2], zero past bq (see
// scaleQueriesBF16).
func attnTileBF16(sc *attnScratch, sb *attnScratchBF16, out []float32, qp, kt, vp []uint32, h, ld, dh, i0, i1, lk, kb int, causal bool) {
	bq := i1 - i0
	bq6 := (bq + 5) / 6 * 6
	dq := dh / 2
	ldp, ktLd := kb/2, kb+16
	qp, pp := qp[:bq6*dq], sb.p[:bq6*ldp]
	// O has the padded rows too: P·V accumulates into it (their P rows are
	// zero).
	o, m, l, alpha := sc.o[:bq6*dh], sc.m[:bq], sc.l[:bq], sc.alpha[:bq]
	for r := range bq {
		m[r] = float32(math.Inf(-1))
		l[r] = 0
	}
	clear(pp[bq*ldp:]) // padded query rows multiply as zero
	clear(o)
	kEnd := lk
	if causal {
		kEnd = min(lk, i1)
	}
	lds := kb
	s := sb.s[:bq6*lds]
	for j0 := 0; j0 < kEnd; j0 += kb {
		j1 := min(j0+kb, kEnd)
		bk := j1 - j0
		bkp := (bk + 63) / 64 * 64
		bkq := (bk + 1) / 2
		// Scores [bq6, bkp] = (scale·Q)·Kᵀ.
		blk := kt[(j0/kb)*dq*ktLd : (j0/kb+1)*dq*ktLd]
		tileMatMulBF16(s, lds, qp, dq, blk, ktLd, bq6, bkp, dq, false)
		// P = exp(S − running max) as bf16 pairs: the whole tile in one
		// call where it can, else row by row (causal masks, ragged blocks).
		if causal || !softmaxTileBF16(s, lds, pp, ldp, bq, bk, m, l, alpha) {
			for r := range bq {
				row := s[r*lds : r*lds+bk]
				prow := pp[r*ldp : r*ldp+bkq]
				lim := bk
				if causal {
					lim = min(bk, i0+r-j0+1)
				}
				if lim <= 0 {
					clear(prow)
					alpha[r] = 1
					continue
				}
				alpha[r] = softmaxRowBF16(prow, row, lim, &m[r], &l[r])
			}
		}
		// O [bq6, dh] = diag(alpha)·O + P·V over bkq key pairs (j0 is even).
		scaleRows(o, dh, bq, dh, alpha)
		tileMatMulBF16(o, dh, pp, ldp, vp[(j0/2)*dh:(j0/2+bkq)*dh], dh, bq6, dh, bkq, true)
	}
	normalizeRows(out, ld, o, dh, h, i0, l)
}

// softmaxRowBF16 is onlineSoftmaxRow for the bf16 tile: the
// probabilities of row[:lim] go to prow as bf16 pairs, zero from lim to
// len(row) (row is the block's bk scores; it may be overwritten). On
// AVX-512 one fused pass (max, exp, sum, conversion) replaces the three of
// onlineSoftmaxRow and toBF16Pairs, with the same results.
func softmaxRowBF16(prow []uint32, row []float32, lim int, m *float32, l *float64) float32 {
	sum, mx, ok := softmaxRowBF16Asm(prow, row, lim, *m)
	if !ok {
		a := onlineSoftmaxRow(row, lim, m, l)
		toBF16Pairs(prow, row)
		return a
	}
	clear(prow[lim/2 : (len(row)+1)/2])
	a := expf(*m - mx)
	*l = *l*float64(a) + sum
	*m = mx
	return a
}

// scaleRowsGo is scaleRows in Go.
func scaleRowsGo(o []float32, ld, rows, n int, alpha []float32) {
	for r, a := range alpha[:rows] {
		if a != 1 {
			for j := range o[r*ld : r*ld+n] {
				o[r*ld+j] *= a
			}
		}
	}
}

// scaleToBF16PairsGo is scaleToBF16Pairs in Go.
func scaleToBF16PairsGo(dst []uint32, src []float32, scale float32) {
	n := len(src)
	for c := range n / 2 {
		dst[c] = pair(src[2*c]*scale, src[2*c+1]*scale)
	}
	if n%2 == 1 {
		dst[n/2] = bf16Bits(src[n-1] * scale)
	}
}

// attentionBF16 is Attention's bf16 engine (see above); the caller checked
// the operands and fastAttentionBF16(dh).
func (b *Backend) attentionBF16(qv, kv, vv []float32, lq, lk, dh, heads, kvHeads int, scale float32, causal bool, cw *watch) compute.Tensor {
	dq, lkq := dh/2, (lk+1)/2
	kb := keyBlockBF16(lk, dh)
	nkb := (lk + kb - 1) / kb
	ktLd := kb + 16
	// Pair words live in pooled float32 buffers (same size, 4 bytes).
	khBuf := b.alloc(kvHeads * nkb * dq * ktLd)
	defer b.release(khBuf)
	vpBuf := b.alloc(kvHeads * lkq * dh)
	defer b.release(vpBuf)
	kh, vp := asWords(khBuf), asWords(vpBuf)
	transposeKeysBF16(b.threads, &cw.stop, kh, kv, lk, kvHeads, dh, kb, nkb)
	splitValuesBF16(b.threads, &cw.stop, vp, vv, lk, kvHeads, dh)
	lq6 := (lq + 5) / 6 * 6
	qpBuf := b.alloc(heads * lq6 * dq)
	defer b.release(qpBuf)
	qp := asWords(qpBuf)
	scaleQueriesBF16(b.threads, &cw.stop, qp, qv, lq, lq6, heads, dh, scale)
	if b.cancelled(cw) {
		return b.placeholder(lq, heads*dh)
	}
	khLen, vpLen := nkb*dq*ktLd, lkq*dh
	out := b.newTensor(lq, heads*dh)
	nqb := (lq + attnBq - 1) / attnBq
	group := heads / kvHeads
	parallelFor(b.threads, heads*nqb, 1, func(lo, hi int) {
		sc := getAttnScratch(dh)
		defer attnPool.Put(sc)
		sb := attnBF16Pool.Get().(*attnScratchBF16)
		defer attnBF16Pool.Put(sb)
		for t := lo; t < hi; t++ {
			if cw.stop.Load() {
				return
			}
			h, qb := t/nqb, t%nqb
			g := h / group
			i0, i1 := qb*attnBq, min(qb*attnBq+attnBq, lq)
			attnTileBF16(sc, sb, out.data, qp[(h*lq6+i0)*dq:], kh[g*khLen:(g+1)*khLen], vp[g*vpLen:(g+1)*vpLen],
				h, heads*dh, dh, i0, i1, lk, kb, causal)
		}
	})
	if b.cancelled(cw) {
		b.Free(out)
		return b.placeholder(lq, heads*dh)
	}
	return out
}

var attnBF16Pool = sync.Pool{New: func() any {
	return &attnScratchBF16{s: make([]float32, attnBq*attnBkMaxBF16), p: make([]uint32, attnBq*attnBkMaxBF16/2)}
}}

// asWords views a float32 buffer as uint32 words.
func asWords(p []float32) []uint32 {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&p[0])), len(p))
}
