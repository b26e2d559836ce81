package cpu

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Attention tiling: every task is one (head, block of attnBq queries) and
// walks the keys in blocks of attnBk, FlashAttention style: scores of the
// tile, a running row maximum and sum, and rescaled output accumulators.
// Nothing of size Lq×Lk is ever allocated.
const (
	attnBq = 128
	attnBk = 256
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
	qs := shapeOf(q)
	ph := func() compute.Tensor { return b.placeholder(qs...) }
	if b.failed() {
		return ph()
	}
	tq, tk, tv := b.get(op, q), b.get(op, k), b.get(op, v)
	if tq == nil || tk == nil || tv == nil {
		return ph()
	}
	if heads <= 0 || kvHeads <= 0 || heads%kvHeads != 0 {
		b.shapeErr(op, fmt.Sprintf("%d query heads do not group over %d kv heads", heads, kvHeads), q, k, v)
		return ph()
	}
	if len(tq.shape) != 2 || tq.shape[1]%heads != 0 || tq.shape[1] == 0 {
		b.shapeErr(op, fmt.Sprintf("q must be [Lq, %d·dh]", heads), q, k, v)
		return ph()
	}
	lq, dh := tq.shape[0], tq.shape[1]/heads
	if len(tk.shape) != 2 || tk.shape[1] != kvHeads*dh || !slices.Equal(tk.shape, tv.shape) || tk.shape[0] == 0 {
		b.shapeErr(op, fmt.Sprintf("k and v must both be [Lk ≥ 1, %d]", kvHeads*dh), q, k, v)
		return ph()
	}
	lk := tk.shape[0]
	qv, kv, vv := b.values(op, tq), b.values(op, tk), b.values(op, tv)
	if qv == nil || kv == nil || vv == nil {
		return ph()
	}

	// Head-major copies of K and V, [kvHeads, Lk, dh], so a key block of one
	// head is a contiguous GEMM operand.
	kh, vh := b.alloc(kvHeads*lk*dh), b.alloc(kvHeads*lk*dh)
	defer b.release(kh)
	defer b.release(vh)
	splitHeads(b.threads, kh, kv, lk, kvHeads, dh)
	splitHeads(b.threads, vh, vv, lk, kvHeads, dh)

	out := b.newTensor(lq, heads*dh)
	nqb := (lq + attnBq - 1) / attnBq
	group := heads / kvHeads
	var errOnce sync.Once
	parallelFor(b.threads, heads*nqb, 1, func(lo, hi int) {
		sc := getAttnScratch(dh)
		defer attnPool.Put(sc)
		for t := lo; t < hi; t++ {
			h, qb := t/nqb, t%nqb
			g := h / group
			i0, i1 := qb*attnBq, min(qb*attnBq+attnBq, lq)
			err := attnTile(sc, out.data, qv, kh[g*lk*dh:(g+1)*lk*dh], vh[g*lk*dh:(g+1)*lk*dh],
				h, heads*dh, dh, i0, i1, lk, scale, causal)
			if err != nil {
				errOnce.Do(func() { b.setErr(fmt.Errorf("cpu: %s: %w", op, err)) })
				return
			}
		}
	})
	return out
}

// splitHeads copies x [L, H·dh] into dst [H, L, dh].
func splitHeads(threads int, dst, x []float32, l, h, dh int) {
	parallelFor(threads, l, max(1, ewGrain/(h*dh)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
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
	for r := range bq {
		inv := float32(1 / l[r])
		dst := out[(i0+r)*ld+h*dh : (i0+r)*ld+(h+1)*dh]
		for j, x := range o[r*dh : (r+1)*dh] {
			dst[j] = x * inv
		}
	}
	return nil
}
