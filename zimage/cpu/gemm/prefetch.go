package gemm

import "unsafe"

// Weights stream from memory: a denoising step reads every weight matrix
// once, and packing a transposed B block (the 16×16 transposes) stalled on
// those reads (~5% of a bf16 step). A task therefore prefetches, a slice
// per micro-panel row of its own multiplication, the B block of the task
// the same worker most likely runs next (tasks are handed out in order, so
// that is this one plus the thread count).

// usePrefetch enables the B block prefetch (benchmarks turn it off).
var usePrefetch = canPrefetch

// bPrefetch walks the rows of one B block of a transposed source ([n, k]
// rows, contiguous along k), a few rows per step.
type bPrefetch struct {
	src        *bSource
	j, end     int // next row, end row
	p0, kb     int // k range
	per        int // rows per step
	esize, ldb int // bytes per value, per row

	// An implicit convolution read from its bf16 image walks channels
	// [j, end) instead, over output columns [cj0, cj0+cnb).
	cj0, cnb int
}

// newBPrefetch prepares the prefetch of rows [j0, j0+nb) over k range
// [p0, p0+kb) in steps of per rows; ok is false for sources it does not
// read (non-transposed, quantized, implicit convolutions in float32).
func newBPrefetch(src *bSource, j0, nb, p0, kb, steps int) (bPrefetch, bool) {
	var es int
	switch {
	case !usePrefetch || nb <= 0 || kb <= 0:
		return bPrefetch{}, false
	case src.kind == srcF32T:
		es = 4
	case src.kind == srcBytesT:
		es = src.dt.Size()
	case src.kind == srcConv && src.bf16 != nil:
		// The image rows the next task's tap pairs read (strided across
		// channels, which the hardware prefetcher does not follow).
		taps := src.conv.kh * src.conv.kw
		c0, c1 := p0/taps, (p0+kb-1)/taps+1
		return bPrefetch{src: src, j: c0, end: c1, per: ceilDiv(c1-c0, max(steps, 1)), cj0: j0, cnb: nb}, true
	default:
		return bPrefetch{}, false
	}
	return bPrefetch{src: src, j: j0, end: j0 + nb, p0: p0, kb: kb, per: ceilDiv(nb, max(steps, 1)),
		esize: es, ldb: src.k * es}, true
}

// step prefetches the next rows of the block.
func (pf *bPrefetch) step() {
	if pf == nil || pf.j >= pf.end {
		return
	}
	if pf.src.kind == srcConv {
		pf.stepConv()
		return
	}
	rows := min(pf.per, pf.end-pf.j)
	first := (pf.j*pf.src.k + pf.p0) * pf.esize // byte offset of the first value
	last := first + (rows-1)*pf.ldb + pf.kb*pf.esize - 1
	var p unsafe.Pointer
	if pf.src.kind == srcF32T {
		_ = pf.src.f32[last/4]
		p = unsafe.Pointer(&pf.src.f32[first/4])
	} else {
		_ = pf.src.raw[last]
		p = unsafe.Pointer(&pf.src.raw[first])
	}
	prefetchRows(p, pf.ldb, rows, pf.kb*pf.esize)
	pf.j += rows
}

// stepConv prefetches, for the next channels, the kh padded image rows of
// each output row of the column range, kw-1 values wider for the shifts.
func (pf *bPrefetch) stepConv() {
	g, img := pf.src.conv, pf.src.bf16
	hp, wp := g.h+2*g.pad, g.w+2*g.pad
	chans := min(pf.per, pf.end-pf.j)
	for c := pf.j; c < pf.j+chans; c++ {
		y, xo := pf.cj0/g.wo, pf.cj0%g.wo
		for off := 0; off < pf.cnb; {
			n := min(pf.cnb-off, g.wo-xo)
			first := (c*hp+y)*wp + xo
			_ = img[first+(g.kh-1)*wp+n+g.kw-2]
			prefetchRows(unsafe.Pointer(&img[first]), wp*2, g.kh, (n+g.kw-1)*2)
			off += n
			y, xo = y+1, 0
		}
	}
	pf.j += chans
}

// nextBlockPrefetch is the prefetch of the B block of task t+threads of
// blocked's task grid (ntaskN column ranges × ntaskM row ranges over npan
// panels of nr columns), or of the next k block's task when that is past
// the last task; ok is false when there is none or it is this task's own
// block.
func nextBlockPrefetch(src *bSource, t, threads, ntaskN, ntaskM, npan, nr, n, p0, kb, kc, k, steps int) (pf bPrefetch, ok bool) {
	if !usePrefetch || threads <= 0 {
		return bPrefetch{}, false
	}
	nt := t + threads
	if nt >= ntaskN*ntaskM {
		nt -= ntaskN * ntaskM
		if p0 += kc; p0 >= k || nt >= ntaskN*ntaskM {
			return bPrefetch{}, false
		}
		kb = min(kc, k-p0)
	} else if nt%ntaskN == t%ntaskN {
		return bPrefetch{}, false
	}
	tn := nt % ntaskN
	j0 := tn * npan / ntaskN * nr
	nb := min(n, (tn+1)*npan/ntaskN*nr) - j0
	return newBPrefetch(src, j0, nb, p0, kb, steps)
}
