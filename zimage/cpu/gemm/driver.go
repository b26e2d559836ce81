package gemm

import (
	"sync/atomic"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// Cache blocking (Goto/BLIS). A block of mcMax×kc rows of A is packed once
// and shared by all threads (it lives in L3); each task packs its own
// ncMax×kc block of B (512 KB: half of Zen 4's 1 MB L2) and sweeps it
// against every mr-row micro-panel of the A block (24 KB: L1). A long kc
// matters most: C is re-read and re-written once per k block, which cost
// ~10% at K = 10240 with kc = 512. Picked by measurement on Zen 4.
var (
	kcMax = 1024
	mcMax = 1536
	ncMax = 128
)

// directMaxM is the largest m for which a non-transposed float32 B is read
// in place by the kernel instead of being packed: with few rows of A, the
// copy would cost about as much as the multiplication.
var directMaxM = 16

// minTasksPerThread is the task count per thread below which taskGrid
// splits a product's columns finer than ncMax.
const minTasksPerThread = 8

// inlineFlops is the problem size (m·n·k) below which a call runs on the
// calling goroutine only.
var inlineFlops = 1 << 18

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// run is the checked entry of every public MatMul: C = A·op(B) (+ bias).
// stop (nil when the call cannot be cancelled) abandons the work between
// tasks once set, leaving C partially written.
func run(stop *atomic.Bool, c, a []float32, src bSource, bias []float32, m, n, k int) {
	if m == 0 || n == 0 {
		return
	}
	c = c[:m*n]
	if k == 0 {
		for i := 0; i < m; i++ {
			row := c[i*n : (i+1)*n]
			if bias != nil {
				copy(row, bias[:n])
			} else {
				clear(row)
			}
		}
		return
	}
	threads := numThreads()
	if m*n*k < inlineFlops {
		threads = 1
	}
	if m <= gemvMaxM && src.kind != srcF32N && src.kind != srcConv {
		gemv(threads, stop, c, a, &src, bias, m, n, k)
		return
	}
	kern := active
	if m < kern.mr && m <= len(kern.narrow) {
		kern = kern.narrow[m-1]
	}
	blocked(kern, threads, stop, c, a, &src, bias, m, n, k)
}

// blocked is the Goto/BLIS loop nest. A task (one B block against the
// shared A block, ≲ 400 MFLOP at the default blocking) is the unit of
// cancellation.
func blocked(kern kernel, threads int, stop *atomic.Bool, c, a []float32, src *bSource, bias []float32, m, n, k int) {
	mr, nr := kern.mr, kern.nr
	direct := src.kind == srcF32N && m <= directMaxM && !kern.pairs && !kern.round

	// Even k blocks (no thin trailing block); bf16 pairs need an even kc.
	kc := ceilDiv(k, ceilDiv(k, kcMax))
	if kern.pairs {
		kc = roundUp(kc, 2)
	}
	// Rows of A per shared block, a multiple of mr, balanced.
	mc := roundUp(ceilDiv(m, ceilDiv(m, mcMax)), mr)
	// Tasks: ranges of nr-column panels of B, each packing its own B block
	// (taskGrid).
	npan := ceilDiv(n, nr)
	ntaskN, ntaskM := taskGrid(npan, nr, mc, mr, threads)
	nc := ceilDiv(npan, ntaskN) * nr // most columns in one task

	bpBufs := make([]*[]float32, threads)
	tmps := make([][]float32, threads) // edge tiles (read by joiners too: fixed before the region)
	for w := range bpBufs {
		bpBufs[w] = getBuf(nc*kc + mr*nr) // + one edge tile
		tmps[w] = (*bpBufs[w])[nc*kc : nc*kc+mr*nr]
	}
	defer func() {
		for _, p := range bpBufs {
			putBuf(p)
		}
	}()

	forBlocks(kern, threads, stop, a, m, k, mc, kc, ntaskN*ntaskM, func(w, t int, bl *aBlock) {
		tn, tm := t%ntaskN, t/ntaskN
		j0 := tn * npan / ntaskN * nr
		nb := min(n, (tn+1)*npan/ntaskN*nr) - j0
		ilo := tm * bl.mpan / ntaskM * mr
		ihi := min(bl.mb, (tm+1)*bl.mpan/ntaskM*mr)
		p0, kb, kq := bl.p0, bl.kb, bl.kq
		buf := *bpBufs[w]
		bp := buf[:roundUp(nb, nr)*kq]
		tmp := tmps[w]
		ldb := 0 // packed panels
		if direct {
			// Whole panels straight from B (row stride n); only a
			// ragged last panel is packed, into the front of bp.
			whole := nb / nr * nr
			if whole < nb {
				packB(bp, src, j0+whole, nb-whole, p0, kb, nr)
			}
			ldb = n
			bp = src.f32[p0*n+j0:]
		} else {
			packBBlock(kern, bp, src, j0, nb, p0, kb, nr)
		}
		var pfp *bPrefetch
		steps := ceilDiv(ihi-ilo, mr)
		var pf bPrefetch
		var ok bool
		switch {
		case bl.next != nil: // this task's next k block comes first
			pf, ok = newBPrefetch(src, j0, nb, bl.next.p0, bl.next.kb, steps)
		case bl.region: // then the first k block of the worker's next task
			if nt := t + threads; nt < ntaskN*ntaskM && nt%ntaskN != tn {
				nn := nt % ntaskN
				nj0 := nn * npan / ntaskN * nr
				pf, ok = newBPrefetch(src, nj0, min(n, (nn+1)*npan/ntaskN*nr)-nj0, 0, min(kc, k), steps)
			}
		default:
			pf, ok = nextBlockPrefetch(src, t, threads, ntaskN, ntaskM, npan, nr, n, p0, kb, kc, k, steps)
		}
		if ok {
			pfp = &pf
		}
		var rowBias []float32 // added once the last k block is in
		if p0+kb == k && src.rowBias != nil {
			rowBias = src.rowBias[bl.i0+ilo:]
		}
		if direct || bl.jb == nil {
			macro(kern, c, n, bl.ap[ilo*kq:], bl.apn, bp, ldb, buf, tmp, bias, rowBias, bl.first, bl.i0+ilo, ihi-ilo, j0, nb, kq, pfp, nil)
			return
		}
		jo := &joinable{}
		jo.run = func(w2 int) bool {
			return macro(kern, c, n, bl.ap[ilo*kq:], bl.apn, bp, 0, nil, tmps[w2], bias, rowBias, bl.first, bl.i0+ilo, ihi-ilo, j0, nb, kq, nil, &jo.cur)
		}
		bl.jb.open(w, jo)
		defer bl.jb.close(w, jo)
		macro(kern, c, n, bl.ap[ilo*kq:], bl.apn, bp, 0, nil, tmp, bias, rowBias, bl.first, bl.i0+ilo, ihi-ilo, j0, nb, kq, pfp, &jo.cur)
	})
}

// aBlock is one step of the loop nest: rows i0..i0+mb of A (mpan
// micro-panels) over k range p0..p0+kb (kq kernel steps: k values, or k
// pairs), packed into ap (apn: the ragged last panel, see narrowPanel);
// bi is the k block's index, first whether it is the first.
type aBlock struct {
	i0, mb, mpan, bi, p0, kb, kq int
	first                        bool
	ap, apn                      []float32
	next                         *aBlock // the next k block in the same task (one-region mode)
	region                       bool    // one-region mode: a task runs every k block
	jb                           *joinBoard
}

// forBlocks runs the Goto/BLIS loop nest over A blocks of mc rows and k
// blocks of kc: it packs each A block (shared by all threads) and runs
// task(worker, t, block) for t < ntask in parallel, stopping between
// blocks once stop is set.
//
// When A is one block of rows and all its k blocks fit allKMax floats, it
// packs them all first and runs one parallel region in which each task
// does its k blocks in order (aBlock.next links them): every C tile sees
// the same kernel calls in the same order, so the bits are the same, but
// the threads meet once instead of once per k block — each meeting is a
// serial A packing and a wait for the slower thread's last task, about 1%
// of a 256² denoising step with the DiT's w2 (k = 2730, three k blocks).
func forBlocks(kern kernel, threads int, stop *atomic.Bool, a []float32, m, k, mc, kc, ntask int, task func(w, t int, bl *aBlock)) {
	mr := kern.mr
	nkb := ceilDiv(k, kc)
	per := mc*kc + mr*kc // + the ragged last panel, compact (narrowPanel)
	if m <= mc && nkb > 1 && nkb*per <= allKMax {
		apBuf := getBuf(nkb * per)
		defer putBuf(apBuf)
		bls := make([]aBlock, nkb)
		for bi := range bls {
			if stop != nil && stop.Load() {
				return
			}
			bl := &bls[bi]
			bl.setK(kern, m, k, kc, bi)
			bl.ap, bl.region = (*apBuf)[bi*per:(bi+1)*per], true
			bl.apn = packABlock(kern, threads, stop, bl.ap, mc*kc, a, k, 0, bl.mb, bl.p0, bl.kb, bl.kq)
			if bi > 0 {
				bls[bi-1].next = bl
			}
		}
		oneRegions.Add(1)
		jb := newJoinBoard(threads)
		for bi := range bls {
			bls[bi].jb = jb
		}
		parallelForJoin(threads, ntask, stop, func(w, t int) {
			for bl := &bls[0]; bl != nil; bl = bl.next {
				if stop != nil && stop.Load() {
					return
				}
				task(w, t, bl)
			}
		}, jb)
		return
	}
	apBuf := getBuf(per)
	defer putBuf(apBuf)
	for i0 := 0; i0 < m; i0 += mc {
		for bi := 0; bi < nkb; bi++ {
			if stop != nil && stop.Load() {
				return
			}
			var bl aBlock // the tasks' copy
			bl.setK(kern, min(mc, m-i0), k, kc, bi)
			bl.i0, bl.ap = i0, *apBuf
			bl.apn = packABlock(kern, threads, stop, bl.ap, mc*kc, a, k, bl.i0, bl.mb, bl.p0, bl.kb, bl.kq)
			bl.jb = newJoinBoard(threads)
			parallelForJoin(threads, ntask, stop, func(w, t int) { task(w, t, &bl) }, bl.jb)
		}
	}
}

// allKMax bounds (floats) the packed A of forBlocks's one-region mode. It
// paid at 256² (the 262 M-parameter model's w2: 0.9M floats, or up to 2M
// with a long prompt); for the real model's 512² qkv (4M floats: each task
// then streams four 2 MB A blocks from L3 instead of the threads sharing
// one) the RealArchDiT step was as fast or slower.
var allKMax = 2 << 20

// setK sets up bl as k block bi (of kc values out of k) of an A block of
// mb rows.
func (bl *aBlock) setK(kern kernel, mb, k, kc, bi int) {
	bl.mb = mb
	bl.mpan = ceilDiv(mb, kern.mr)
	bl.bi, bl.p0 = bi, bi*kc
	bl.kb = min(kc, k-bl.p0)
	bl.first = bi == 0
	bl.kq = bl.kb
	if kern.pairs {
		bl.kq = (bl.kb + 1) / 2
	}
}

// packBBlock packs columns j0..j0+nb of B over k range p0..p0+kb into bp
// as kern's micro-panels (bf16 pairs, or values rounded for the rounding
// kernels).
func packBBlock(kern kernel, bp []float32, src *bSource, j0, nb, p0, kb, nr int) {
	if kern.pairs {
		packBPairs(bp, src, j0, nb, p0, kb, nr)
		return
	}
	packB(bp, src, j0, nb, p0, kb, nr)
	if kern.round && !(src.kind == srcBytesT && src.dt == weights.BF16) {
		roundPanel(bp)
	}
}

// macro multiplies a packed A block (mb rows) by a B block (nb columns)
// into C rows i0.., columns j0... B is packed panels (ldb == 0) or B in
// place with row stride ldb, whose ragged last panel is then packed at the
// front of edge. first marks the first k block: C is overwritten (with bias
// added) instead of accumulated into. pf (may be nil) is stepped once per
// micro-panel row. rowBias (nil but on the last k block of a convolution
// with bias) is then added to the rows of C, tile by tile while the tile is
// in cache: the same additions as a pass over C afterwards.
//
// apn (nil when there is none) is the A block's ragged last micro-panel
// packed compactly for the kernel of that many rows (narrowPanel): its edge
// tiles then compute only the real rows — the same sums in the same order,
// so the result is unchanged.
//
// cur (nil: all rows, in order) hands out the micro-panel rows when threads
// share the block (joinable); macro reports whether it computed any.
func macro(kern kernel, c []float32, ldc int, ap, apn, bp []float32, ldb int, edge, tmp, bias, rowBias []float32, first bool, i0, mb, j0, nb, kb int, pf *bPrefetch, cur *rowCursor) bool {
	mr, nr := kern.mr, kern.nr
	did := false
	next, end := 0, mb // the rows [next, end) this thread holds
	if cur != nil {
		end = 0
	}
	for {
		if next >= end {
			if cur == nil {
				return did
			}
			if next, end = cur.claim(mr, mb); next >= mb {
				return did
			}
		}
		ir := next
		next += mr
		did = true
		pf.step()
		rows := min(mr, mb-ir)
		apanel := ap[ir*kb : (ir+mr)*kb]
		for jr := 0; jr < nb; jr += nr {
			cols := min(nr, nb-jr)
			bpanel, bstride := bp[jr*kb:], nr
			switch {
			case ldb == 0:
			case cols == nr:
				bpanel, bstride = bp[jr:], ldb
			default:
				bpanel = edge
			}
			ci := (i0+ir)*ldc + j0 + jr
			if rows == mr && cols == nr {
				if first && bias != nil {
					for i := 0; i < mr; i++ {
						copy(c[ci+i*ldc:ci+i*ldc+nr], bias[j0+jr:j0+jr+nr])
					}
					kern.fn(kb, apanel, bpanel, c[ci:], bstride, ldc, true)
				} else {
					kern.fn(kb, apanel, bpanel, c[ci:], bstride, ldc, !first)
				}
				addRowBias(c[ci:], ldc, rowBias, ir, rows, cols)
				continue
			}
			// Edge tile: compute the tile into tmp, then merge the valid part.
			if rows < mr && apn != nil {
				kern.narrow[rows-1].fn(kb, apn, bpanel, tmp, bstride, nr, false)
			} else {
				kern.fn(kb, apanel, bpanel, tmp, bstride, nr, false)
			}
			for i := 0; i < rows; i++ {
				crow := c[ci+i*ldc : ci+i*ldc+cols]
				trow := tmp[i*nr : i*nr+cols]
				switch {
				case !first:
					for j, v := range trow {
						crow[j] += v
					}
				case bias != nil:
					for j, v := range trow {
						crow[j] = v + bias[j0+jr+j]
					}
				default:
					copy(crow, trow)
				}
			}
			addRowBias(c[ci:], ldc, rowBias, ir, rows, cols)
		}
	}
}

// taskGrid splits npan nr-column panels into ntaskN tasks of about ncMax
// columns, a multiple of the thread count so threads finish together, and,
// when that leaves threads idle, the mc rows of the A block into ntaskM
// ranges of mr-row panels as well.
//
// With fewer than minTasksPerThread tasks per thread the tasks shrink
// toward one panel each: a thread that finishes its share early waits for
// the other's last task, and a 1024-column product at 256² (8 tasks of
// ~0.4 ms) left the helper idle at the end of most of them.
func taskGrid(npan, nr, mc, mr, threads int) (ntaskN, ntaskM int) {
	ntaskN = ceilDiv(npan, max(1, ncMax/nr))
	if threads > 1 && ntaskN < minTasksPerThread*threads {
		ntaskN = min(npan, minTasksPerThread*threads)
	}
	if threads > 1 {
		ntaskN = min(npan, roundUp(ntaskN, threads))
	}
	ntaskM = 1
	if ntaskN < 2*threads && threads > 1 {
		ntaskM = min(ceilDiv(mc, mr), ceilDiv(2*threads, ntaskN))
	}
	return ntaskN, ntaskM
}

// packABlock packs rows i0..i0+mb of A over k range p0..p0+kb into ap as
// the kernel's micro-panels (kq steps each), a few panels per task, and
// returns the ragged last panel's compact copy at ap[at:] (narrowPanel).
func packABlock(kern kernel, threads int, stop *atomic.Bool, ap []float32, at int, a []float32, k, i0, mb, p0, kb, kq int) []float32 {
	mr := kern.mr
	npanels := ceilDiv(mb, mr)
	const perTask = 8
	parallelFor(aPackThreads(kern, threads, mb, kb), ceilDiv(npanels, perTask), stop, func(_, t int) {
		for r := t * perTask; r < min(npanels, (t+1)*perTask); r++ {
			panel := ap[r*mr*kq : (r+1)*mr*kq]
			rows := min(mr, mb-r*mr)
			if kern.pairs {
				packAPanelPairs(panel, a, k, i0+r*mr, rows, p0, kb, mr)
				continue
			}
			packAPanel(panel, a, k, i0+r*mr, rows, p0, kb, mr)
			if kern.round {
				roundPanel(panel)
			}
		}
	})
	return narrowPanel(kern, ap, at, mb, kq)
}

// narrowEdges turns narrowPanel on (tests compare with it off).
var narrowEdges = true

// narrowPanel copies the ragged last micro-panel of an A block of mb rows
// (packed with stride mr, kq steps) to ap[at:], packed with stride rows
// for the kernel of that many rows, and returns it; nil when the block has
// no ragged panel or the kernel no narrow variant. ap must hold at+rows·kq.
func narrowPanel(kern kernel, ap []float32, at, mb, kq int) []float32 {
	mr := kern.mr
	rows := mb % mr
	if rows == 0 || rows > len(kern.narrow) || !narrowEdges {
		return nil
	}
	src := ap[(mb-rows)*kq : (mb-rows+mr)*kq]
	dst := ap[at : at+rows*kq]
	for q := range kq {
		copy(dst[q*rows:(q+1)*rows], src[q*mr:q*mr+rows])
	}
	return dst
}

// addRowBias adds rowBias[ir+i] to row i of a rows×cols tile of C (row
// stride ldc); nothing when rowBias is nil.
func addRowBias(c []float32, ldc int, rowBias []float32, ir, rows, cols int) {
	if rowBias == nil {
		return
	}
	for i := range rows {
		addScalar(c[i*ldc:i*ldc+cols], rowBias[ir+i])
	}
}

// addScalarGo is addScalar in Go.
func addScalarGo(row []float32, v float32) {
	for j := range row {
		row[j] += v
	}
}

// unsafeU32 views a float32 slice as uint32 words.
func unsafeU32(p []float32) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(&p[0])), len(p))
}
