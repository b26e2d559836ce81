package cpu

import (
	"github.com/zimage/zimage/zimage/compute"
)

// RoPE rotates each head of x [L, heads·dh] by cos, sin [L, dh/2].
func (b *Backend) RoPE(x, cos, sin compute.Tensor, heads int, interleaved bool) compute.Tensor {
	const op = "RoPE"
	l, dh, rule := compute.RoPEShape(x, cos, sin, heads)
	in, ok := b.operands(op, rule, x, cos, sin)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tc, ts := in[0], in[1], in[2]
	half := dh / 2
	xv, cv, sv := b.values(op, tx), b.values(op, tc), b.values(op, ts)
	if xv == nil || cv == nil || sv == nil {
		return b.placeholder(tx.shape...)
	}
	d := tx.shape[1]
	out := b.newTensor(tx.shape...)
	parallelFor(b.threads, l, max(1, ewGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			cr, sr := cv[r*half:(r+1)*half], sv[r*half:(r+1)*half]
			for h := range heads {
				src := xv[r*d+h*dh : r*d+(h+1)*dh]
				dst := out.data[r*d+h*dh : r*d+(h+1)*dh]
				if interleaved {
					ropePairs(dst, src, cr, sr)
				} else {
					ropeHalves(dst[:half], dst[half:], src[:half], src[half:], cr, sr)
				}
			}
		}
	})
	return out
}

// Upsample2x repeats each pixel of x [C, H, W] into a 2×2 block.
func (b *Backend) Upsample2x(x compute.Tensor) compute.Tensor {
	const op = "Upsample2x"
	shape, rule := compute.Upsample2xShape(x)
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shape...)
	}
	tx := xs[0]
	c, h, w := tx.shape[0], tx.shape[1], tx.shape[2]
	xv := b.values(op, tx)
	if xv == nil {
		return b.placeholder(c, 2*h, 2*w)
	}
	out := b.newTensor(c, 2*h, 2*w)
	parallelFor(b.threads, c*h, max(1, ewGrain/max(4*w, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = ch·h + y
			src := xv[r*w : (r+1)*w]
			dst := out.data[r*4*w : (r+1)*4*w]
			dupPairs2(dst[:2*w], dst[2*w:], src)
		}
	})
	return out
}

// Transpose returns x [R, C] as [C, R], in cache-sized tiles.
func (b *Backend) Transpose(x compute.Tensor) compute.Tensor {
	const op = "Transpose"
	shape, rule := compute.TransposeShape(x)
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shape...)
	}
	tx := xs[0]
	r, c := tx.shape[0], tx.shape[1]
	xv := b.values(op, tx)
	if xv == nil {
		return b.placeholder(c, r)
	}
	out := b.newTensor(c, r)
	transpose(b.threads, out.data, xv, r, c)
	return out
}

// transpose writes src [r, c] into dst [c, r].
func transpose(threads int, dst, src []float32, r, c int) {
	const tile = 32
	tilesR := (r + tile - 1) / tile
	parallelFor(threads, tilesR, max(1, ewGrain/max(tile*c, 1)), func(lo, hi int) {
		for tr := lo; tr < hi; tr++ {
			r0, r1 := tr*tile, min(tr*tile+tile, r)
			for c0 := 0; c0 < c; c0 += tile {
				c1 := min(c0+tile, c)
				for i := r0; i < r1; i++ {
					row := src[i*c : i*c+c]
					for j := c0; j < c1; j++ {
						dst[j*r+i] = row[j]
					}
				}
			}
		}
	})
}

// Embedding gathers rows ids of table [V, D], converting a weight's rows from
// their storage dtype.
func (b *Backend) Embedding(table compute.Tensor, ids []int) compute.Tensor {
	const op = "Embedding"
	shape, rule := compute.EmbeddingShape(table, ids)
	ts, ok := b.operands(op, rule, table)
	if !ok {
		return b.placeholder(shape...)
	}
	tt, d := ts[0], shape[1]
	out := b.newTensor(len(ids), d)
	for i, id := range ids {
		row := b.rowValues(op, tt, id*d, (id+1)*d)
		if row == nil {
			return b.placeholder(len(ids), d)
		}
		copy(out.data[i*d:(i+1)*d], row)
	}
	return out
}

// Rows returns a copy of rows [start, end) of x [M, ...].
func (b *Backend) Rows(x compute.Tensor, start, end int) compute.Tensor {
	const op = "Rows"
	shape, rule := compute.RowsShape(x, start, end)
	ph := func() compute.Tensor { return b.placeholder(shape...) }
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return ph()
	}
	tx := xs[0]
	row := tx.numel() / max(tx.shape[0], 1)
	if tx.shape[0] == 0 {
		row = 0
	}
	src := b.rowValues(op, tx, start*row, end*row)
	if src == nil {
		return ph()
	}
	out := b.newTensor(shape...)
	parallelCopy(b.threads, out.data, src)
	return out
}

// parallelCopy copies src into dst (equal lengths).
func parallelCopy(threads int, dst, src []float32) {
	parallelFor(threads, len(src), 1<<18, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
}

// Concat stacks tensors along their first axis.
func (b *Backend) Concat(ts ...compute.Tensor) compute.Tensor {
	const op = "Concat"
	shape, rule := compute.ConcatShape(ts...)
	ph := func() compute.Tensor { return b.placeholder(shape...) }
	cts, ok := b.operands(op, rule, ts...)
	if !ok {
		return ph()
	}
	srcs := make([][]float32, len(cts))
	for i, t := range cts {
		if srcs[i] = b.values(op, t); srcs[i] == nil {
			return ph()
		}
	}
	out := b.newTensor(shape...)
	off := 0
	for _, s := range srcs {
		parallelCopy(b.threads, out.data[off:off+len(s)], s)
		off += len(s)
	}
	return out
}

// Repeat stacks n copies of row [1, D] or [D] → [n, D].
func (b *Backend) Repeat(row compute.Tensor, n int) compute.Tensor {
	const op = "Repeat"
	shape, rule := compute.RepeatShape(row, n)
	rs, ok := b.operands(op, rule, row)
	if !ok {
		return b.placeholder(shape...)
	}
	tr, d := rs[0], shape[1]
	src := b.values(op, tr)
	if src == nil {
		return b.placeholder(n, d)
	}
	out := b.newTensor(n, d)
	parallelFor(b.threads, n, max(1, ewGrain/max(d, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(out.data[i*d:(i+1)*d], src)
		}
	})
	return out
}

// Slice returns columns [start, end) of x [M, N].
func (b *Backend) Slice(x compute.Tensor, start, end int) compute.Tensor {
	const op = "Slice"
	shape, rule := compute.SliceShape(x, start, end)
	ph := func() compute.Tensor { return b.placeholder(shape...) }
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return ph()
	}
	tx := xs[0]
	m, n := tx.shape[0], tx.shape[1]
	w := end - start
	xv := b.values(op, tx)
	if xv == nil {
		return ph()
	}
	out := b.newTensor(m, w)
	parallelFor(b.threads, m, max(1, ewGrain/max(w, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(out.data[r*w:(r+1)*w], xv[r*n+start:r*n+end])
		}
	})
	return out
}
