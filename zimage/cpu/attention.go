package cpu

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Attention tiling: every task is one (head, block of attnBq queries) and
// walks the keys in blocks of attnBk, FlashAttention style: scores of the
// tile, a running row maximum and sum, and rescaled output accumulators.
// Nothing of size Lq×Lk is ever allocated.
//
// Two inner engines: with AVX-512 and dh a multiple of 64 the tile products
// run on an in-place 6×64 register kernel (keys pre-transposed per block,
// values head-major, nothing packed per tile); otherwise on gemm calls.
const (
	attnBq = 120 // a multiple of 6, the kernel's row count
	attnBk = 256
	ktLd   = attnBk + 16 // row stride of a transposed key block (breaks 1 KB cache aliasing)
)

// attnScratch is one task's working set (a few hundred KB: stays in L2).
type attnScratch struct {
	q, o, t, s []float32
	m, alpha   []float32
	l          []float64
}

var attnPool sync.Pool

func getAttnScratch(dh int) *attnScratch {
	sc, _ := attnPool.Get().(*attnScratch)
	if sc == nil || cap(sc.q) < attnBq*dh {
		sc = &attnScratch{
			q: make([]float32, attnBq*dh), o: make([]float32, attnBq*dh),
			t: make([]float32, attnBq*dh), s: make([]float32, attnBq*attnBk),
			m: make([]float32, attnBq), alpha: make([]float32, attnBq), l: make([]float64, attnBq),
		}
	}
	return sc
}

// Attention is fused scaled-dot-product attention (see compute.Backend).
func (b *Backend) Attention(q, k, v compute.Tensor, heads, kvHeads int, scale float32, causal bool) compute.Tensor {
	const op = "Attention"
	lq, lk, dh, rule := compute.AttentionShape(q, k, v, heads, kvHeads)
	ph := func() compute.Tensor { return b.placeholder(shapeOf(q)...) }
	ts, ok := b.operands(op, rule, q, k, v)
	if !ok {
		return ph()
	}
	tq, tk, tv := ts[0], ts[1], ts[2]
	qv, kv, vv := b.values(op, tq), b.values(op, tk), b.values(op, tv)
	if qv == nil || kv == nil || vv == nil {
		return ph()
	}

	// Values head-major [kvHeads, Lk, dh]; keys either the same (gemm path)
	// or transposed per key block [kvHeads, blocks, dh, ktLd] (tile kernel).
	fast := fastAttention(dh)
	nkb := (lk + attnBk - 1) / attnBk
	cw := b.current()
	if b.bf16 && fastAttentionBF16(dh) {
		return b.attentionBF16(qv, kv, vv, lq, lk, dh, heads, kvHeads, scale, causal, cw)
	}
	vh := b.alloc(kvHeads * lk * dh)
	defer b.release(vh)
	splitHeads(b.threads, &cw.stop, vh, vv, lk, kvHeads, dh)
	var kh []float32
	if fast {
		kh = b.alloc(kvHeads * nkb * dh * ktLd)
		transposeKeys(b.threads, &cw.stop, kh, kv, lk, kvHeads, dh, nkb)
	} else {
		kh = b.alloc(kvHeads * lk * dh)
		splitHeads(b.threads, &cw.stop, kh, kv, lk, kvHeads, dh)
	}
	defer b.release(kh)
	khLen := len(kh) / kvHeads
	if b.cancelled(cw) { // the re-layout takes ~60 ms at 1024²
		return ph()
	}

	out := b.newTensor(lq, heads*dh)
	nqb := (lq + attnBq - 1) / attnBq
	group := heads / kvHeads
	var errOnce sync.Once
	parallelFor(b.threads, heads*nqb, 1, func(lo, hi int) {
		sc := getAttnScratch(dh)
		defer attnPool.Put(sc)
		for t := lo; t < hi; t++ {
			if cw.stop.Load() { // cancelled: leave the remaining query blocks
				return
			}
			h, qb := t/nqb, t%nqb
			g := h / group
			i0, i1 := qb*attnBq, min(qb*attnBq+attnBq, lq)
			khg, vhg := kh[g*khLen:(g+1)*khLen], vh[g*lk*dh:(g+1)*lk*dh]
			if fast {
				attnTileFast(sc, out.data, qv, khg, vhg, h, heads*dh, dh, i0, i1, lk, scale, causal)
				continue
			}
			err := attnTile(sc, out.data, qv, khg, vhg, h, heads*dh, dh, i0, i1, lk, scale, causal)
			if err != nil {
				errOnce.Do(func() { b.setErr(fmt.Errorf("cpu: %s: %w", op, err)) })
				return
			}
		}
	})
	if b.cancelled(cw) {
		b.Free(out)
		return ph()
	}
	return out
}

// transposeKeys copies k [L, H·dh] into dst [H, nkb, dh, ktLd]: block kb
// of head g holds keys kb·attnBk.. as columns, zero past the last key. It
// gives up (leaving dst partial) once stop is set.
func transposeKeys(threads int, stop *atomic.Bool, dst, k []float32, l, h, dh, nkb int) {
	parallelFor(threads, h*nkb, 1, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			if stop.Load() {
				return
			}
			g, kb := t/nkb, t%nkb
			blk := dst[t*dh*ktLd : (t+1)*dh*ktLd]
			clear(blk)
			j0, j1 := kb*attnBk, min(kb*attnBk+attnBk, l)
			for j := j0; j < j1; j++ {
				for c, x := range k[(j*h+g)*dh : (j*h+g+1)*dh] {
					blk[c*ktLd+j-j0] = x
				}
			}
		}
	})
}

// splitHeads copies x [L, H·dh] into dst [H, L, dh]. It gives up (leaving
// dst partial) once stop is set.
func splitHeads(threads int, stop *atomic.Bool, dst, x []float32, l, h, dh int) {
	parallelFor(threads, l, max(1, ewGrain/(h*dh)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if stop.Load() {
				return
			}
			for g := range h {
				copy(dst[(g*l+i)*dh:(g*l+i+1)*dh], x[(i*h+g)*dh:(i*h+g+1)*dh])
			}
		}
	})
}

// attnTile computes query rows [i0, i1) of head h: out[i, h·dh:(h+1)·dh].
// qv is q [Lq, ld]; kh and vh are this head's keys and values [Lk, dh].
func attnTile(sc *attnScratch, out, qv, kh, vh []float32, h, ld, dh, i0, i1, lk int, scale float32, causal bool) error {
	bq := i1 - i0
	qt, o, m, l, alpha := sc.q[:bq*dh], sc.o[:bq*dh], sc.m[:bq], sc.l[:bq], sc.alpha[:bq]
	for r := range bq {
		// Scores are taken from pre-scaled queries: (scale·q)·k.
		for j, x := range qv[(i0+r)*ld+h*dh : (i0+r)*ld+(h+1)*dh] {
			qt[r*dh+j] = x * scale
		}
		m[r] = float32(math.Inf(-1))
		l[r] = 0
	}
	clear(o)
	kEnd := lk
	if causal {
		kEnd = min(lk, i1) // key j is visible to query i iff j ≤ i
	}
	for j0 := 0; j0 < kEnd; j0 += attnBk {
		j1 := min(j0+attnBk, kEnd)
		bk := j1 - j0
		s := sc.s[:bq*bk]
		// Scores [bq, bk] = Q·Kᵀ.
		if err := gemm.MatMulBTF32(s, qt, kh[j0*dh:j1*dh], nil, bq, bk, dh); err != nil {
			return err
		}
		for r := range bq {
			row := s[r*bk : (r+1)*bk]
			lim := bk
			if causal {
				lim = min(bk, i0+r-j0+1)
			}
			if lim <= 0 { // every key of the block is masked for this query
				clear(row)
				alpha[r] = 1
				continue
			}
			mx := rowMax(row[:lim], m[r])
			sum := expSub(row[:lim], mx)
			clear(row[lim:])
			a := expf(m[r] - mx) // 0 on the first block (m = -Inf)
			alpha[r] = a
			l[r] = l[r]*float64(a) + sum
			m[r] = mx
		}
		// O = O·alpha + P·V.
		t := sc.t[:bq*dh]
		if err := gemm.MatMul(t, s, vh[j0*dh:j1*dh], bq, dh, bk); err != nil {
			return err
		}
		for r := range bq {
			scaleAdd(o[r*dh:(r+1)*dh], t[r*dh:(r+1)*dh], alpha[r])
		}
	}
	normalizeRows(out, ld, o, dh, h, i0, l)
	return nil
}

// attnTileFast is attnTile on the in-place tile kernel: kt is this head's
// transposed key blocks [nkb, dh, ktLd], vh its values [Lk, dh]; dh is a
// multiple of 64. Tile rows are padded to a multiple of 6 with zero
// queries whose results are discarded.
func attnTileFast(sc *attnScratch, out, qv, kt, vh []float32, h, ld, dh, i0, i1, lk int, scale float32, causal bool) {
	bq := i1 - i0
	bq6 := (bq + 5) / 6 * 6
	qt, o, m, l, alpha := sc.q[:bq6*dh], sc.o[:bq*dh], sc.m[:bq], sc.l[:bq], sc.alpha[:bq]
	for r := range bq {
		for j, x := range qv[(i0+r)*ld+h*dh : (i0+r)*ld+(h+1)*dh] {
			qt[r*dh+j] = x * scale
		}
		m[r] = float32(math.Inf(-1))
		l[r] = 0
	}
	clear(qt[bq*dh:])
	clear(o)
	kEnd := lk
	if causal {
		kEnd = min(lk, i1)
	}
	const lds = attnBk
	s := sc.s[:bq6*lds]
	t := sc.t[:bq6*dh]
	for j0 := 0; j0 < kEnd; j0 += attnBk {
		j1 := min(j0+attnBk, kEnd)
		bk := j1 - j0
		bkp := (bk + 63) / 64 * 64
		// Scores [bq6, bkp] = (scale·Q)·Kᵀ from the transposed key block.
		blk := kt[(j0/attnBk)*dh*ktLd : (j0/attnBk+1)*dh*ktLd]
		tileMatMul(s, lds, qt, dh, blk, ktLd, bq6, bkp, dh)
		for r := range bq {
			row := s[r*lds : r*lds+bk]
			lim := bk
			if causal {
				lim = min(bk, i0+r-j0+1)
			}
			if lim <= 0 {
				clear(row)
				alpha[r] = 1
				continue
			}
			alpha[r] = onlineSoftmaxRow(row, lim, &m[r], &l[r])
		}
		// T [bq6, dh] = P·V; padded rows hold zero scores and are ignored.
		tileMatMul(t, dh, s, lds, vh[j0*dh:j1*dh], dh, bq6, dh, bk)
		for r := range bq {
			scaleAdd(o[r*dh:(r+1)*dh], t[r*dh:(r+1)*dh], alpha[r])
		}
	}
	normalizeRows(out, ld, o, dh, h, i0, l)
}

// normalizeRows writes the tile's output rows: out[(i0+r)·ld + h·dh:][:dh]
// = o[r·dh:][:dh] · float32(1/l[r]) for r < len(l).
func normalizeRows(out []float32, ld int, o []float32, dh, h, i0 int, l []float64) {
	for r, lr := range l {
		scaleRow(out[(i0+r)*ld+h*dh:(i0+r)*ld+(h+1)*dh], o[r*dh:(r+1)*dh], float32(1/lr))
	}
}

// onlineSoftmaxRow is one row's step of the streaming softmax: row[:lim]
// becomes exp(score − new max) in place, row[lim:] is zeroed, the running
// max m and sum l are updated, and the factor that rescales the row's
// earlier output is returned. Shared by the float32 and bf16 kernels.
func onlineSoftmaxRow(row []float32, lim int, m *float32, l *float64) float32 {
	mx := rowMax(row[:lim], *m)
	sum := expSub(row[:lim], mx)
	clear(row[lim:])
	a := expf(*m - mx)
	*l = *l*float64(a) + sum
	*m = mx
	return a
}
