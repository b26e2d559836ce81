package gemm

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/zimage/zimage/weights"
)

// Quantized right operands (the ggml block types of GGUF checkpoints).
//
// B stays in its blocks in memory. With more than gemvMaxM rows of A the
// float32 blocked GEMM runs on a quantized source: each task dequantizes
// the blocks it needs straight into its packed B panels (packQuantPanel:
// on AVX-512, generated kernels that dequantize 16 rows × 16 values in
// registers and transpose them into the panel, gen_quant.go), one pass
// over the weights per A block. With fewer rows (the GEMV path, gemvQuant)
// generated kernels dot the blocks directly, dequantizing in registers.
// Both give the float32 GEMM's result on the dequantized matrix, bit for
// bit (the chunked mode, kept as the tests' reference, dequantizes chunks
// of B rows and multiplies them with the float32 engine); memory stays at
// the quantized size plus small scratch.

// quantChunkBytes bounds the float32 scratch of one chunk of B rows.
const quantChunkBytes = 4 << 20

// MatMulBTQuant is MatMulBT for B [n,k] stored in a ggml block-quantized
// dtype (weights.Q8_0, Q4_K, ...): each row of B is k/BlockSize blocks.
func MatMulBTQuant(c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	return matMulBTQuant(nil, c, a, b, bt, bias, m, n, k)
}

// MatMulBTQuantCtx is MatMulBTQuant that gives up when ctx is done.
func MatMulBTQuantCtx(ctx context.Context, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	return finish(ctx, stop, release, matMulBTQuant(stop, c, a, b, bt, bias, m, n, k))
}

func matMulBTQuant(stop *atomic.Bool, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	return matMulBTQuantMode(stop, false, c, a, b, bt, bias, m, n, k)
}

// MatMulBTQuantBF16Ctx is MatMulBTQuantCtx computed in bfloat16 with
// float32 accumulation (see BFloat16 compute in bf16.go): the blocks are
// dequantized to float32 as MatMulBTQuant does and then rounded to bf16
// pairs while packing, so the result is MatMulBTF32BF16Ctx's on the
// dequantized matrix, bit for bit. Products with at most gemvMaxM rows run
// the float32 GEMV on the blocks, as MatMulBTBF16 does.
func MatMulBTQuantBF16Ctx(ctx context.Context, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	if m <= gemvMaxM {
		return MatMulBTQuantCtx(ctx, c, a, b, bt, bias, m, n, k)
	}
	src, err := quantSource(c, a, b, bt, bias, m, n, k)
	if err != nil {
		return err
	}
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	runPrec(stop, true, c, a, src, bias, m, n, k)
	return finish(ctx, stop, release, nil)
}

// quantSource checks a quantized product's operands and returns B as a
// packing source.
func quantSource(c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) (bSource, error) {
	if err := checkDims(m, n, k); err != nil {
		return bSource{}, err
	}
	deq := weights.DequantBlock(bt)
	if deq == nil {
		return bSource{}, fmt.Errorf("%w %v for a quantized B", ErrDType, bt)
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return bSource{}, err
	}
	rb, ok := bt.RowBytes(k)
	if !ok {
		return bSource{}, fmt.Errorf("%w: k=%d is not a multiple of the %v block size %d", ErrShape, k, bt, bt.BlockSize())
	}
	if len(b) < n*rb {
		return bSource{}, fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), n*rb, n, k, bt)
	}
	return bSource{kind: srcQuantT, raw: b[:n*rb], dt: bt, deq: deq, rb: rb, n: n, k: k}, nil
}

// matMulBTQuantMode runs the product; chunked forces the older
// dequantize-a-chunk-then-multiply path (the reference of the tests) for
// every m.
func matMulBTQuantMode(stop *atomic.Bool, chunked bool, c, a []float32, b []byte, bt weights.DType, bias []float32, m, n, k int) error {
	src, err := quantSource(c, a, b, bt, bias, m, n, k)
	if err != nil {
		return err
	}
	deq, rb := src.deq, src.rb
	if m == 0 || n == 0 {
		return nil
	}
	if !chunked && m > gemvMaxM {
		// Blocked GEMM that dequantizes straight into the packed B panels
		// (packQuantPanel): one pass over the weights, and the same panels
		// as the float32 engine packs from dequantized rows, so the same
		// sums in the same order.
		run(stop, c, a, src, bias, m, n, k)
		return nil
	}
	if !chunked {
		gemvQuant(stop, c, a, src, bias, m, n, k)
		return nil
	}
	// The reference for the tests: dequantize chunks of B rows with all
	// threads, then multiply them with the float32 GEMV (gemv, which reads
	// float32 rows in place).
	nc := min(n, max(16, quantChunkBytes/(4*max(k, 1))/16*16))
	scratch := make([]float32, nc*k)
	tile := c[:0]
	if nc < n {
		tile = make([]float32, m*nc)
	}
	for j0 := 0; j0 < n; j0 += nc {
		if stop != nil && stop.Load() {
			return nil
		}
		cols := min(nc, n-j0)
		bf := scratch[:cols*k]
		dequantRows(bf, b[j0*rb:(j0+cols)*rb], deq, bt, cols, k, rb)
		var bb []float32
		if bias != nil {
			bb = bias[j0 : j0+cols]
		}
		// The float32 engine (matMulBTF32) does the product: this file only
		// depends on that entry point, not on the packing internals.
		if cols == n {
			return matMulBTF32(stop, c, a, bf, bb, m, cols, k)
		}
		t := tile[:m*cols]
		if err := matMulBTF32(stop, t, a, bf, bb, m, cols, k); err != nil {
			return err
		}
		for i := range m {
			copy(c[i*n+j0:i*n+j0+cols], t[i*cols:(i+1)*cols])
		}
	}
	return nil
}

// dequantRows expands rows of quantized bytes into dst [rows, k], split
// over the GEMM's worker pool (parallelFor: a memory fault reading a
// truncated weight file is raised in the caller, as for the other GEMMs).
func dequantRows(dst []float32, src []byte, deq weights.DequantBlockFunc, bt weights.DType, rows, k, rb int) {
	bs, bb := bt.BlockSize(), bt.BlockBytes()
	const per = 16 // rows per task
	threads := numThreads()
	if rows*k < 1<<16 {
		threads = 1
	}
	parallelFor(threads, ceilDiv(rows, per), nil, func(_, task int) {
		for r := task * per; r < min((task+1)*per, rows); r++ {
			row, out := src[r*rb:(r+1)*rb], dst[r*k:(r+1)*k]
			for i := range k / bs {
				deq(out[i*bs:(i+1)*bs], row[i*bb:(i+1)*bb])
			}
		}
	})
}

// packQuantPanel is packB for one micro-panel of a quantized source:
// 16 rows at a time, the blocks covering k range p0..p0+kb are dequantized
// into a small row-major scratch (L2-resident) and transposed into the
// panel as from a float32 B, so the panel holds the very values the
// float32 engine would pack from the dequantized matrix.
func packQuantPanel(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) {
	const g = 16 // rows per group: the assembly transposer's tile
	bs, bb := src.dt.BlockSize(), src.dt.BlockBytes()
	blo, bhi := p0/bs, ceilDiv(p0+kb, bs)
	ks := (bhi - blo) * bs // values dequantized per row
	off := p0 - blo*bs     // first wanted value in a scratch row
	start := packQuantFused(panel, nr, src, jbase, cols, p0, kb)
	if start == cols {
		return
	}
	buf := getBuf(g*ks + 16*(bhi-blo))
	defer putBuf(buf)
	s, sc := (*buf)[:g*ks], (*buf)[g*ks:]
	for r0 := start; r0 < cols; r0 += g {
		rows := min(g, cols-r0)
		for r := range rows {
			row := src.raw[(jbase+r0+r)*src.rb:][:src.rb]
			out := s[r*ks : (r+1)*ks]
			if dequantBlocksAsm(out, row[blo*bb:bhi*bb], src.dt, sc) {
				continue
			}
			for i := blo; i < bhi; i++ {
				src.deq(out[(i-blo)*bs:(i-blo+1)*bs], row[i*bb:(i+1)*bb])
			}
		}
		f := bSource{kind: srcF32T, f32: s[:rows*ks], n: rows, k: ks}
		sub := panel[r0:]
		tr, tk := transposeRows(sub, nr, &f, 0, rows, off, kb)
		packScalar(sub, nr, &f, 0, 0, tr, tk, kb, off)
		packScalar(sub, nr, &f, 0, tr, rows, 0, kb, off)
	}
}

// f16ToF32 is weights.F16ToF32 with the normal numbers inline (scales are
// read once per block and the call was a visible share of the packing).
func f16ToF32(h uint16) float32 {
	if e := uint32(h>>10) & 0x1f; e != 0 && e != 0x1f {
		return math.Float32frombits(uint32(h>>15)<<31 | (e+112)<<23 | uint32(h&0x3ff)<<13)
	}
	return weights.F16ToF32(h)
}

// quantFusedMaxM is the largest m for which gemvQuant dots the blocks
// directly (dequantizing each value once per row of A) instead of
// dequantizing 16 rows of B into a scratch first.
var quantFusedMaxM = 8

// gemvQuant is gemv (few rows of A) on a quantized B, 16 rows of B at a
// time: with the fused dot kernels where they apply (gemvQuantFused), else
// dequantized into an L2-resident float32 scratch that gemv's loops read.
// Rows are dotted in the same groups of 4 (dot4's arithmetic) and the same
// tail (dotGo, the last n%4 rows) as gemv on the whole dequantized matrix,
// so the result is the chunked path's bit for bit.
func gemvQuant(stop *atomic.Bool, c, a []float32, src bSource, bias []float32, m, n, k int) {
	threads := numThreads()
	if m*n*k < inlineFlops {
		threads = 1
	}
	rowsPer := max(16, roundUp(ceilDiv(n, 8*threads), 16))
	ntask := ceilDiv(n, rowsPer)
	bs, bb := src.dt.BlockSize(), src.dt.BlockBytes()
	parallelFor(threads, ntask, stop, func(_, t int) {
		j0, j1 := t*rowsPer, min(n, (t+1)*rowsPer)
		buf := getBuf(16*k + 16*(k/bs))
		defer putBuf(buf)
		tmp, sc := (*buf)[:16*k], (*buf)[16*k:]
		var tab []float32
		if m <= quantFusedMaxM {
			tb := getBuf(k / bs * max(1, quantScaleFloats(src.dt)))
			defer putBuf(tb)
			tab = *tb
		}
		var sums [4]float32
		for g0 := j0; g0 < j1; g0 += 16 {
			rows := min(16, j1-g0)
			raw := src.raw[g0*src.rb : (g0+rows)*src.rb]
			if rows == 16 && tab != nil && gemvQuantFused(c, a, raw, src.rb, src.dt, m, n, k, g0, tab) {
				continue
			}
			for r := range rows {
				row, out := raw[r*src.rb:(r+1)*src.rb], tmp[r*k:(r+1)*k]
				if dequantBlocksAsm(out, row, src.dt, sc) {
					continue
				}
				for i := range k / bs {
					src.deq(out[i*bs:(i+1)*bs], row[i*bb:(i+1)*bb])
				}
			}
			f := bSource{kind: srcF32T, f32: tmp[:rows*k], n: rows, k: k}
			j := 0
			for ; j+4 <= rows && dot4Available(); j += 4 {
				for p0 := 0; p0 < k; p0 += gemvChunk {
					pn := min(gemvChunk, k-p0)
					for i := 0; i < m; i++ {
						dot4(&sums, a[i*k+p0:i*k+p0+pn], &f, j, p0, nil)
						cq := c[i*n+g0+j : i*n+g0+j+4 : i*n+g0+j+4]
						if p0 == 0 {
							cq[0], cq[1], cq[2], cq[3] = sums[0], sums[1], sums[2], sums[3]
						} else {
							cq[0], cq[1], cq[2], cq[3] = cq[0]+sums[0], cq[1]+sums[1], cq[2]+sums[2], cq[3]+sums[3]
						}
					}
				}
			}
			for ; j < rows; j++ {
				row := tmp[j*k : (j+1)*k]
				for i := 0; i < m; i++ {
					c[i*n+g0+j] = dotGo(a[i*k:(i+1)*k], row)
				}
			}
		}
		if bias != nil {
			for i := 0; i < m; i++ {
				crow := c[i*n+j0 : i*n+j1]
				for jj, bv := range bias[j0:j1] {
					crow[jj] += bv
				}
			}
		}
	})
}
