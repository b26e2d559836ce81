package gemm

import (
	"context"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// Pre-packed weights for the bf16 GEMM. MatMulBTBF16 packs every block of
// B into the kernel's micro-panels on every call (bf16 pairs transposed
// from the weight rows, with a prefetch to hide the strided reads): a few
// percent of a DiT step, repeated for every step. A BF16Packed holds those
// panels once, laid out exactly as blocked consumes them — per k block (the
// same kc, which depends only on k), each nr-column panel as kq×nr words
// (kq = k pairs, or k values for the rounding float32 kernels), the ragged
// last panel zero-padded — so a product reads them in place, contiguously.
// The products are the same, in the same order: results equal
// MatMulBTBF16Ctx's bit for bit. No software prefetch: the panels a task
// reads are contiguous, and prefetching the next task's panels (measured,
// bench/README.md) did not help over the hardware prefetcher.

// BF16Packed is a weight B [n, k] packed for MatMulBTBF16PackedCtx.
type BF16Packed struct {
	n, k int
	kern kernel    // the kernel the panels are laid out for
	kc   int       // k block size
	offs []int     // offset (in words) of each k block's panels
	data []float32 // the panels, k block after k block
	src  bSource   // the original bytes: the GEMV (m ≤ gemvMaxM) and a changed kernel read them
}

// N returns the rows of the packed weight (output columns).
func (p *BF16Packed) N() int { return p.n }

// K returns the columns of the packed weight (the inner dimension).
func (p *BF16Packed) K() int { return p.k }

// Bytes returns the memory the panels hold.
func (p *BF16Packed) Bytes() int64 { return 4 * int64(len(p.data)) }

// PackedBF16Bytes returns the memory PackBF16 would allocate for an [n, k]
// weight with this machine's bf16 kernel.
func PackedBF16Bytes(n, k int) int64 {
	words, _, _ := packLayout(bf16Kernel, n, k)
	return 4 * int64(words)
}

// packLayout returns the words of a pack of an [n, k] B for kern, its kc
// and the offset of each k block.
func packLayout(kern kernel, n, k int) (words, kc int, offs []int) {
	if k == 0 || n == 0 {
		return 0, 0, nil
	}
	kc = ceilDiv(k, ceilDiv(k, kcMax))
	if kern.pairs {
		kc = roundUp(kc, 2)
	}
	w := roundUp(n, kern.nr)
	for p0 := 0; p0 < k; p0 += kc {
		offs = append(offs, words)
		kb := min(kc, k-p0)
		if kern.pairs {
			kb = (kb + 1) / 2
		}
		words += w * kb
	}
	return words, kc, offs
}

// PackBF16 packs a weight B [n, k] of dtype dt (F32, BF16, F16, F8_E4M3 or
// F8_E5M2, row-major, as MatMulBTBF16 takes it) for this machine's bf16
// kernel. The pack keeps a reference to b (products with few rows read it).
func PackBF16(b []byte, dt weights.DType, n, k int) (*BF16Packed, error) {
	return PackBF16Ctx(context.Background(), b, dt, n, k)
}

// PackBF16Ctx is PackBF16 that gives up when ctx is done.
func PackBF16Ctx(ctx context.Context, b []byte, dt weights.DType, n, k int) (*BF16Packed, error) {
	stop, release, err := watch(ctx)
	if err != nil {
		return nil, err
	}
	if n < 0 || k < 0 {
		release()
		return nil, fmt.Errorf("%w: negative dimension n=%d k=%d", ErrShape, n, k)
	}
	switch dt {
	case weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2:
	default:
		release()
		return nil, fmt.Errorf("%w %v for B (want F32, BF16, F16, F8_E4M3 or F8_E5M2)", ErrDType, dt)
	}
	if need := n * k * dt.Size(); len(b) < need {
		release()
		return nil, fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), need, n, k, dt)
	}
	kern := bf16Kernel
	words, kc, offs := packLayout(kern, n, k)
	p := &BF16Packed{n: n, k: k, kern: kern, kc: kc, offs: offs, data: alignedFloats(words), src: newBSource(b, dt, n, k)}
	// One task per k block and range of panels, each as a GEMM task packs
	// its block.
	nr := kern.nr
	npan := ceilDiv(n, nr)
	per := max(1, ncMax/nr)
	ntn := ceilDiv(npan, per)
	parallelFor(numThreads(), len(offs)*ntn, stop, func(_, t int) {
		bi, tn := t/ntn, t%ntn
		p0 := bi * kc
		kb := min(kc, k-p0)
		kq := kb
		if kern.pairs {
			kq = (kb + 1) / 2
		}
		j0 := tn * per * nr
		nb := min(n, j0+per*nr) - j0
		dst := p.data[offs[bi]+j0*kq:]
		if kern.pairs {
			packBPairs(dst, &p.src, j0, nb, p0, kb, nr)
			return
		}
		packB(dst, &p.src, j0, nb, p0, kb, nr)
		if kern.round && dt != weights.BF16 {
			roundPanel(dst[:roundUp(nb, nr)*kq])
		}
	})
	if err := finish(ctx, stop, release, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// RawBF16 returns a weight B [n, k] of dtype dt (as PackBF16 takes it)
// for MatMulBTBF16MultiCtx without packing it: the product packs its
// panels per call, as MatMulBTBF16Ctx does, into per-task scratch. A
// product of several weights on one A (q, k, v; w1, w3) then packs A once
// and runs one parallel region, also when the weights are not pre-packed.
// It holds no memory of its own (Bytes is 0) and keeps a reference to b.
func RawBF16(b []byte, dt weights.DType, n, k int) (*BF16Packed, error) {
	if n < 0 || k < 0 {
		return nil, fmt.Errorf("%w: negative dimension n=%d k=%d", ErrShape, n, k)
	}
	switch dt {
	case weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2:
	default:
		return nil, fmt.Errorf("%w %v for B (want F32, BF16, F16, F8_E4M3 or F8_E5M2)", ErrDType, dt)
	}
	if need := n * k * dt.Size(); len(b) < need {
		return nil, fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), need, n, k, dt)
	}
	_, kc, _ := packLayout(bf16Kernel, n, k)
	return &BF16Packed{n: n, k: k, kern: bf16Kernel, kc: kc, src: newBSource(b, dt, n, k)}, nil
}

// raw reports whether p holds no panels (RawBF16, or an empty weight).
func (p *BF16Packed) raw() bool { return p.data == nil }

// alignedFloats returns n zeroed floats starting on a 64-byte boundary.
func alignedFloats(n int) []float32 {
	if n == 0 {
		return nil
	}
	raw := make([]float32, n+16)
	off := 0
	if mis := uintptr(unsafe.Pointer(&raw[0])) & 63; mis != 0 {
		off = int(64-mis) / 4
	}
	return raw[off : off+n : off+n]
}

// usable reports whether p's panels fit the bf16 kernel and the k
// blocking in use now (tests and benchmarks switch them).
func (p *BF16Packed) usable() bool {
	if p.kern.name != bf16Kernel.name || p.kern.pairs != bf16Kernel.pairs || p.kern.nr != bf16Kernel.nr {
		return false
	}
	_, kc, _ := packLayout(bf16Kernel, 1, p.k)
	return kc == p.kc
}

// MatMulBTBF16PackedCtx is MatMulBTBF16Ctx with B pre-packed by PackBF16:
// C [m, n] = A [m, k]·Bᵀ (+ bias), bit for bit the same result.
func MatMulBTBF16PackedCtx(ctx context.Context, c, a []float32, p *BF16Packed, bias []float32, m, n, k int) error {
	if p == nil {
		return fmt.Errorf("%w: nil packed weight", ErrShape)
	}
	return MatMulBTBF16MultiCtx(ctx, [][]float32{c}, a, []*BF16Packed{p}, [][]float32{bias}, m, k, n)
}

// MatMulBTBF16MultiCtx computes Cᵢ [m, nᵢ] = A [m, k]·Bᵢᵀ (+ biasᵢ) for
// several packed weights of the same k in one pass: A is packed once per
// k block and one parallel region's tasks span every output's panels
// (a RawBF16 weight's panels are packed by the task that uses them). The
// results equal separate MatMulBTBF16PackedCtx (and MatMulBTBF16Ctx) calls
// bit for bit. biases may be nil or hold nil entries. ns, when given, are
// the expected nᵢ (checked against the packs).
func MatMulBTBF16MultiCtx(ctx context.Context, cs [][]float32, a []float32, ps []*BF16Packed, biases [][]float32, m, k int, ns ...int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	if err := checkMulti(cs, a, ps, biases, m, k, ns); err != nil {
		release()
		return err
	}
	bias := func(i int) []float32 {
		if biases == nil {
			return nil
		}
		return biases[i]
	}
	if m == 0 {
		return finish(ctx, stop, release, nil)
	}
	kern := bf16Kernel
	fast := m > gemvMaxM && k > 0
	for _, p := range ps {
		fast = fast && p.usable()
	}
	if !fast {
		// The GEMV (few rows), an empty k, or panels of another kernel: the
		// unpacked product on the original bytes.
		for i, p := range ps {
			if stop != nil && stop.Load() {
				break
			}
			runPrec(stop, true, cs[i], a, p.src, bias(i), m, p.n, k)
		}
		return finish(ctx, stop, release, nil)
	}
	threads := numThreads()
	flops := 0
	for _, p := range ps {
		flops += m * p.n * k
	}
	if flops < inlineFlops {
		threads = 1
	}
	if m < kern.mr && m <= len(kern.narrow) {
		kern = kern.narrow[m-1]
	}
	outs := make([]packedOut, 0, len(ps))
	for i, p := range ps {
		if p.n > 0 {
			outs = append(outs, packedOut{c: cs[i][:m*p.n], p: p, bias: bias(i)})
		}
	}
	blockedPacked(kern, threads, stop, outs, a, m, k)
	return finish(ctx, stop, release, nil)
}

// checkMulti validates MatMulBTBF16MultiCtx's arguments.
func checkMulti(cs [][]float32, a []float32, ps []*BF16Packed, biases [][]float32, m, k int, ns []int) error {
	if len(cs) != len(ps) || (biases != nil && len(biases) != len(ps)) || (ns != nil && len(ns) != len(ps)) {
		return fmt.Errorf("%w: %d outputs, %d packed weights, %d biases", ErrShape, len(cs), len(ps), len(biases))
	}
	if m < 0 || k < 0 {
		return fmt.Errorf("%w: negative dimension m=%d k=%d", ErrShape, m, k)
	}
	if len(a) < m*k {
		return fmt.Errorf("%w: A has %d elements, want %d (%d×%d)", ErrShape, len(a), m*k, m, k)
	}
	for i, p := range ps {
		if p == nil {
			return fmt.Errorf("%w: packed weight %d is nil", ErrShape, i)
		}
		if p.k != k {
			return fmt.Errorf("%w: packed weight %d has k=%d, A has %d columns", ErrShape, i, p.k, k)
		}
		if ns != nil && ns[i] != p.n {
			return fmt.Errorf("%w: packed weight %d has n=%d, want %d", ErrShape, i, p.n, ns[i])
		}
		if len(cs[i]) < m*p.n {
			return fmt.Errorf("%w: C %d has %d elements, want %d (%d×%d)", ErrShape, i, len(cs[i]), m*p.n, m, p.n)
		}
		if biases != nil && biases[i] != nil && len(biases[i]) < p.n {
			return fmt.Errorf("%w: bias %d has %d elements, want %d", ErrShape, i, len(biases[i]), p.n)
		}
	}
	return nil
}

// packedOut is one output of blockedPacked.
type packedOut struct {
	c    []float32
	p    *BF16Packed // panels, or raw (RawBF16): packed per task
	bias []float32
}

// blockedPacked is blocked for pre-packed B (every output's pack has the
// same kc, which depends only on k): the A block is packed once per k
// block for all outputs, and tasks are ranges of the outputs' panels taken
// as one list. Every C tile sees the same A panel, B panel, k blocks and
// first/bias handling as in blocked, so the results are the same bits.
func blockedPacked(kern kernel, threads int, stop *atomic.Bool, outs []packedOut, a []float32, m, k int) {
	if len(outs) == 0 {
		return
	}
	mr, nr := kern.mr, kern.nr
	kc := outs[0].p.kc
	mc := roundUp(ceilDiv(m, ceilDiv(m, mcMax)), mr)

	// Panels of all outputs, numbered in order; pstart[i] is output i's first.
	pstart := make([]int, len(outs)+1)
	for i, o := range outs {
		pstart[i+1] = pstart[i] + ceilDiv(o.p.n, nr)
	}
	npan := pstart[len(outs)]
	ntaskN, ntaskM := taskGrid(npan, nr, mc, mr, threads)
	anyRaw := false
	for _, o := range outs {
		anyRaw = anyRaw || o.p.raw()
	}

	// Per thread: an edge tile, and the B panels of a task's raw weights.
	bpWords := 0
	if anyRaw {
		bpWords = ceilDiv(npan, ntaskN) * nr * kc
	}
	tmps := make([]*[]float32, threads)
	edges := make([][]float32, threads) // edge tiles (read by joiners too: fixed before the region)
	for w := range tmps {
		tmps[w] = getBuf(mr*nr + bpWords)
		edges[w] = (*tmps[w])[:mr*nr]
	}
	defer func() {
		for _, p := range tmps {
			putBuf(p)
		}
	}()

	forBlocks(kern, threads, stop, a, m, k, mc, kc, ntaskN*ntaskM, func(w, t int, bl *aBlock) {
		tn, tm := t%ntaskN, t/ntaskN
		plo, phi := tn*npan/ntaskN, (tn+1)*npan/ntaskN
		ilo := tm * bl.mpan / ntaskM * mr
		ihi := min(bl.mb, (tm+1)*bl.mpan/ntaskM*mr)
		kq := bl.kq
		buf := *tmps[w]
		tmp := edges[w]
		var pfp *bPrefetch
		if anyRaw {
			nt, p0, kb := t+threads, bl.p0, bl.kb
			switch {
			case bl.next != nil: // this task's next k block comes first
				nt, p0, kb = t, bl.next.p0, bl.next.kb
			case bl.region: // then the first k block of the worker's next task
				p0, kb = 0, min(kc, k)
			}
			if pf, ok := nextRawPrefetch(outs, pstart, nt, ntaskN, ntaskM, npan, nr, p0, kb, ceilDiv(ihi-ilo, mr)); ok {
				pfp = &pf
			}
		}
		// The task's panels, output by output.
		for i, o := range outs {
			lo, hi := max(plo, pstart[i]), min(phi, pstart[i+1])
			if lo >= hi {
				continue
			}
			n := o.p.n
			j0 := (lo - pstart[i]) * nr
			nb := min(n, (hi-pstart[i])*nr) - j0
			var bp []float32
			if o.p.raw() {
				bp = buf[mr*nr : mr*nr+roundUp(nb, nr)*kq]
				packBBlock(kern, bp, &o.p.src, j0, nb, bl.p0, bl.kb, nr)
			} else {
				bp = o.p.data[o.p.offs[bl.bi]+j0*kq:]
			}
			if bl.jb == nil {
				macro(kern, o.c, n, bl.ap[ilo*kq:], bl.apn, bp, 0, nil, tmp, o.bias, nil, bl.first, bl.i0+ilo, ihi-ilo, j0, nb, kq, pfp, nil)
				continue
			}
			jo := &joinable{}
			jo.run = func(w2 int) bool {
				return macro(kern, o.c, n, bl.ap[ilo*kq:], bl.apn, bp, 0, nil, edges[w2], o.bias, nil, bl.first, bl.i0+ilo, ihi-ilo, j0, nb, kq, nil, &jo.cur)
			}
			bl.jb.open(w, jo)
			func() {
				defer bl.jb.close(w, jo)
				macro(kern, o.c, n, bl.ap[ilo*kq:], bl.apn, bp, 0, nil, tmp, o.bias, nil, bl.first, bl.i0+ilo, ihi-ilo, j0, nb, kq, pfp, &jo.cur)
			}()
		}
	})
}

// nextRawPrefetch is the prefetch, for blockedPacked's task t of ntaskN
// panel ranges × ntaskM row ranges in the current k block, of the first
// raw weight's rows that task t packs (ok false when t is past the k
// block's tasks or packs nothing).
func nextRawPrefetch(outs []packedOut, pstart []int, t, ntaskN, ntaskM, npan, nr, p0, kb, steps int) (bPrefetch, bool) {
	if t >= ntaskN*ntaskM {
		return bPrefetch{}, false
	}
	tn := t % ntaskN
	plo, phi := tn*npan/ntaskN, (tn+1)*npan/ntaskN
	for i, o := range outs {
		lo, hi := max(plo, pstart[i]), min(phi, pstart[i+1])
		if lo >= hi || !o.p.raw() {
			continue
		}
		j0 := (lo - pstart[i]) * nr
		return newBPrefetch(&o.p.src, j0, min(o.p.n, (hi-pstart[i])*nr)-j0, p0, kb, steps)
	}
	return bPrefetch{}, false
}

// PackHelps reports whether products with m rows use a pack: fewer rows
// run the GEMV on the original bytes.
func PackHelps(m int) bool { return m > gemvMaxM }
