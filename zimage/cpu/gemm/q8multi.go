package gemm

import (
	"context"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// q8ABlock is the size (bytes) of the quantized A block a task sweeps
// against a pre-packed B panel, and q8AWhole the size of the whole
// quantized A above which it is cut into such blocks (variables so tests
// can force many blocks). Measured on Zen 5 (1 MB L2, 32 MB L3;
// BenchmarkGEMMQ80, N = 3840): cut in 1 MB blocks, M = 4128 ran at
// 1.17–1.30× the uncut rate (K = 3840 and 10240, A 17.8 and 47 MB), but
// M = 1056 and 2080 (A 4.5–12 MB, at home in the L3) at 0.86–0.95×.
var (
	q8ABlock = 1 << 20
	q8AWhole = 16 << 20
)

// q8Out is one output of q8RunMulti: C [m, n] = A·Bᵀ (+ bias), B as Q8_0
// rows (b) or packed by PackQ80 (pb).
type q8Out struct {
	c    []float32
	b    []byte
	pb   *Q80Packed
	bias []float32
	n    int
}

// q8RunMulti quantizes A into tile panels once, then runs the column panels
// of every output's B as one list of tasks: each packs its panel (or takes
// it from pb) and sweeps every row panel of A. A tile's arithmetic does not
// depend on the other outputs: each result equals a product on its own.
func q8RunMulti(stop *atomic.Bool, outs []q8Out, a []float32, m, k int) {
	q8RunFmt(stop, outs, a, m, k, nil)
}

// q8RunFmt is q8RunMulti for B in Q8_0 (kf nil) or in the K-quant format
// kf (outputs' b only, unpacked per task by packKQB; kq.go).
func q8RunFmt(stop *atomic.Bool, outs []q8Out, a []float32, m, k int, kf *kqFormat) {
	if m == 0 {
		return
	}
	if k == 0 {
		for _, o := range outs {
			for i := range m {
				for j := range o.n {
					o.c[i*o.n+j] = 0
					if o.bias != nil {
						o.c[i*o.n+j] = o.bias[j]
					}
				}
			}
		}
		return
	}
	nb := k / q8Block
	mp := ceilDiv(m, q8MR)
	// Panels of all outputs, numbered in order; pstart[i] is output i's first.
	pstart := make([]int, len(outs)+1)
	flops, packs := 0, false
	for i, o := range outs {
		pstart[i+1] = pstart[i] + ceilDiv(o.n, q8NR)
		flops += m * o.n * k
		packs = packs || o.pb == nil
	}
	npan := pstart[len(outs)]
	if npan == 0 {
		return
	}
	threads := numThreads()
	if flops < inlineFlops {
		threads = 1
	}
	// A panels: [panel][block][4 rows][32 bytes] as q+128, scales
	// [panel][block][4 rows]. Pooled: fresh memory is page faults (at
	// 1024² a DiT forward quantizes ~200 MB of activations).
	aqBuf, adBuf := getBuf(mp*nb*q8Block*q8MR/4), getBuf(mp*nb*q8MR)
	defer putBuf(aqBuf)
	defer putBuf(adBuf)
	aq := unsafe.Slice((*byte)(unsafe.Pointer(&(*aqBuf)[0])), mp*nb*q8Block*q8MR)
	ad := *adBuf
	sub := 1 // scale groups per block
	if kf != nil {
		sub = kf.sub
	}
	var as []float32 // with mins: the scaled sums per scale group, [panel][block][sub][4 rows]
	if kf != nil && kf.min {
		asBuf := getBuf(mp * nb * sub * q8MR)
		defer putBuf(asBuf)
		as = *asBuf
	}
	parallelFor(threads, mp, stop, func(_, p int) {
		for r := range q8MR {
			i := p*q8MR + r
			base := p * nb * q8Block * q8MR
			if i >= m { // padding row: q = 0 (stored 128), d = 0
				for blk := range nb {
					row := aq[base+blk*q8Block*q8MR+r*q8Block:][:q8Block]
					for t := range row {
						row[t] = 128
					}
					ad[p*nb*q8MR+blk*q8MR+r] = 0
					if as != nil {
						for h := range sub {
							as[((p*nb+blk)*sub+h)*q8MR+r] = 0
						}
					}
				}
				continue
			}
			quantRow(aq[base+r*q8Block:], ad[p*nb*q8MR+r:], a[i*k:(i+1)*k], nb)
			if as != nil {
				blockSums(as[p*nb*sub*q8MR+r:], aq[base+r*q8Block:], ad[p*nb*q8MR+r:], nb, sub)
			}
		}
	})
	type panel struct {
		bq     []int8
		db, mb []float32
		corr   []int32
	}
	nmb := 0 // mins per block and column
	if kf != nil && kf.min {
		nmb = sub
	}
	bufs := make([]panel, threads)
	for w := range bufs {
		if packs {
			// One pooled buffer per worker: int8 values, then float32
			// scales, int32 corrections and float32 mins.
			vw, sw := nb*q8Block*q8NR/4, sub*nb*q8NR
			buf := getBuf(vw + 2*sw + nmb*nb*q8NR)
			defer putBuf(buf)
			f := *buf
			bufs[w] = panel{unsafe.Slice((*int8)(unsafe.Pointer(&f[0])), nb*q8Block*q8NR),
				f[vw : vw+sw], f[vw+2*sw : vw+2*sw+nmb*nb*q8NR],
				unsafe.Slice((*int32)(unsafe.Pointer(&f[vw+sw])), sw)}
		}
	}
	// Pre-packed B and a large A: the row panels are cut into blocks of
	// about q8ABlock bytes, and the tasks run block by block (every column
	// panel of one, then the next), so the A block a task sweeps stays near
	// its core while each B panel is read once per block. Sweeping all of A
	// per column panel streamed it from memory once A outgrew the L3: at
	// M = 4128, K = 3840 (17.8 MB of A) the product ran at 58% of the
	// kernel's rate on Zen 5, against 89% at M = 1056. B packed per task
	// (raw Q8_0, K-quants) keeps one block: repacking per block would cost
	// more than it saves. Every tile is the same kernel call either way.
	rowBlk := mp
	if panelBytes := q8MR * (k + k/8); !packs && mp*panelBytes > q8AWhole { // q+128 bytes and a float32 scale per 32
		rowBlk = min(mp, max(1, q8ABlock/panelBytes))
	}
	nrb := ceilDiv(mp, rowBlk)
	parallelFor(threads, nrb*npan, stop, func(w, task int) {
		rb, g := task/npan, task%npan
		oi := 0
		for g >= pstart[oi+1] {
			oi++
		}
		o, t := &outs[oi], g-pstart[oi]
		c, n, bias := o.c, o.n, o.bias
		j0 := t * q8NR
		cols := min(q8NR, n-j0)
		var bq []int8
		var db, mb []float32
		var corr []int32
		switch pb := o.pb; {
		case pb != nil:
			bq = pb.bq[t*nb*q8Block*q8NR : (t+1)*nb*q8Block*q8NR]
			db, corr = pb.db[t*nb*q8NR:(t+1)*nb*q8NR], pb.corr[t*nb*q8NR:(t+1)*nb*q8NR]
		case kf != nil:
			bq, db, mb, corr = bufs[w].bq, bufs[w].db, bufs[w].mb, bufs[w].corr
			packKQB(kf, bq, db, mb, corr, o.b, j0, cols, nb)
		default:
			bq, db, corr = bufs[w].bq, bufs[w].db, bufs[w].corr
			packQ8B(bq, db, corr, o.b, j0, cols, nb)
		}
		kern := func(ap []byte, dp, sp []float32, c []float32, ldc int) {
			if kf != nil {
				kqKernel.fn(kf, ap, dp, sp, bq, db, mb, corr, c, ldc, nb)
				return
			}
			q8Kernel.fn(ap, dp, bq, db, corr, c, ldc, nb)
		}
		var tile [q8MR * q8NR]float32
		for p := rb * rowBlk; p < min(mp, (rb+1)*rowBlk); p++ {
			ap, dp := aq[p*nb*q8Block*q8MR:(p+1)*nb*q8Block*q8MR], ad[p*nb*q8MR:(p+1)*nb*q8MR]
			var sp []float32
			if as != nil {
				sp = as[p*nb*sub*q8MR : (p+1)*nb*sub*q8MR]
			}
			if cols == q8NR && (p+1)*q8MR <= m && bias == nil {
				// A whole tile: the kernel stores into C (a copy through
				// the tile cost ~3% of the product at M = 4096).
				kern(ap, dp, sp, c[p*q8MR*n+j0:], n)
				continue
			}
			kern(ap, dp, sp, tile[:], q8NR)
			for r := range min(q8MR, m-p*q8MR) {
				dst := c[(p*q8MR+r)*n+j0 : (p*q8MR+r)*n+j0+cols]
				src := tile[r*q8NR : r*q8NR+cols]
				if bias == nil {
					copy(dst, src)
					continue
				}
				for j, v := range src {
					dst[j] = v + bias[j0+j]
				}
			}
		}
	})
}

// MatMulBTQ80PackedMultiCtx computes Cᵢ [m, nᵢ] = A [m, k]·Bᵢᵀ (+ biasᵢ)
// for several PackQ80 weights of the same k in one pass: A is quantized
// once and one parallel region's tasks span every output's panels. Each
// result equals MatMulBTQ80PackedCtx's bit for bit. biases may be nil or
// hold nil entries.
func MatMulBTQ80PackedMultiCtx(ctx context.Context, cs [][]float32, a []float32, ps []*Q80Packed, biases [][]float32, m int) error {
	if len(cs) != len(ps) || (biases != nil && len(biases) != len(ps)) || len(ps) == 0 {
		return fmt.Errorf("%w: %d outputs, %d packed weights, %d biases", ErrShape, len(cs), len(ps), len(biases))
	}
	outs := make([]q8Out, len(ps))
	for i, p := range ps {
		if p == nil {
			return fmt.Errorf("%w: packed weight %d is nil", ErrShape, i)
		}
		if p.k != ps[0].k {
			return fmt.Errorf("%w: packed weight %d has k=%d, weight 0 has %d", ErrShape, i, p.k, ps[0].k)
		}
		var bias []float32
		if biases != nil {
			bias = biases[i]
		}
		if err := checkDims(m, p.n, p.k); err != nil {
			return err
		}
		if err := checkLens(cs[i], a, bias, m, p.n, p.k); err != nil {
			return err
		}
		outs[i] = q8Out{c: cs[i], pb: p, bias: bias, n: p.n}
	}
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	q8RunMulti(stop, outs, a, m, ps[0].k)
	return finish(ctx, stop, release, nil)
}

// Bytes returns the memory the packed matrix holds.
func (p *Q80Packed) Bytes() int64 {
	return int64(len(p.bq)) + 4*int64(len(p.db)) + 4*int64(len(p.corr))
}

// PackedQ80Bytes returns the memory PackQ80 allocates for an [n, k] matrix.
func PackedQ80Bytes(n, k int) int64 {
	blocks := int64(ceilDiv(n, q8NR)) * int64(k/q8Block) * q8NR
	return blocks * (q8Block + 8)
}
