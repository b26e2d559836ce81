package gemm

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/zimage/zimage/weights"
)

// Quantized right operands (the ggml block types of GGUF checkpoints).
//
// B stays in its blocks in memory; the product walks B in chunks of rows
// (a few MiB of float32 each), dequantizes a chunk with all threads and
// multiplies it with the float32 engine into a [m, chunk] tile that is
// copied into C. The chunk is dequantized once and reused for every row
// of A, so the extra work is O(n·k) next to the product's O(m·n·k), and
// memory stays at the quantized size plus the scratch.

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
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	deq := weights.DequantBlock(bt)
	if deq == nil {
		return fmt.Errorf("%w %v for a quantized B", ErrDType, bt)
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return err
	}
	rb, ok := bt.RowBytes(k)
	if !ok {
		return fmt.Errorf("%w: k=%d is not a multiple of the %v block size %d", ErrShape, k, bt, bt.BlockSize())
	}
	if len(b) < n*rb {
		return fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), n*rb, n, k, bt)
	}
	if m == 0 || n == 0 {
		return nil
	}
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
