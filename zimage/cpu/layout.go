package cpu

import (
	"fmt"

	"github.com/zimage/zimage/zimage/compute"
)

// RoPE rotates each head of x [L, heads·dh] by cos, sin [L, dh/2].
func (b *Backend) RoPE(x, cos, sin compute.Tensor, heads int, interleaved bool) compute.Tensor {
	const op = "RoPE"
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tc, ts := b.get(op, x), b.get(op, cos), b.get(op, sin)
	if tx == nil || tc == nil || ts == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if len(tx.shape) != 2 || heads <= 0 || tx.shape[1] == 0 || tx.shape[1]%heads != 0 || (tx.shape[1]/heads)%2 != 0 {
		b.shapeErr(op, fmt.Sprintf("x must be [L, heads·dh] with %d heads and even dh", heads), x, cos, sin)
		return b.placeholder(tx.shape...)
	}
	l, dh := tx.shape[0], tx.shape[1]/heads
	half := dh / 2
	if len(tc.shape) != 2 || tc.shape[0] != l || tc.shape[1] != half || len(ts.shape) != 2 || ts.shape[0] != l || ts.shape[1] != half {
		b.shapeErr(op, fmt.Sprintf("cos and sin must be [%d, %d]", l, half), x, cos, sin)
		return b.placeholder(tx.shape...)
	}
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
					for j := range half {
						a, c := src[2*j], src[2*j+1]
						co, si := cr[j], sr[j]
						dst[2*j] = float32(a*co) - float32(c*si)
						dst[2*j+1] = float32(a*si) + float32(c*co)
					}
				} else {
					for j := range half {
						a, c := src[j], src[j+half]
						co, si := cr[j], sr[j]
						dst[j] = float32(a*co) - float32(c*si)
						dst[j+half] = float32(c*co) + float32(a*si)
					}
				}
			}
		}
	})
	return out
}

// Upsample2x repeats each pixel of x [C, H, W] into a 2×2 block.
func (b *Backend) Upsample2x(x compute.Tensor) compute.Tensor {
	const op = "Upsample2x"
	if b.failed() {
		s := shapeOf(x)
		if len(s) == 3 {
			return b.placeholder(s[0], 2*s[1], 2*s[2])
		}
		return b.placeholder(s...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if len(tx.shape) != 3 {
		b.shapeErr(op, "x must be [C, H, W]", x)
		return b.placeholder(tx.shape...)
	}
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
			for i, v := range src {
				dst[2*i] = v
				dst[2*i+1] = v
			}
			copy(dst[2*w:], dst[:2*w])
		}
	})
	return out
}

// Transpose returns x [R, C] as [C, R], in cache-sized tiles.
func (b *Backend) Transpose(x compute.Tensor) compute.Tensor {
	const op = "Transpose"
	if b.failed() {
		s := shapeOf(x)
		if len(s) == 2 {
			return b.placeholder(s[1], s[0])
		}
		return b.placeholder(s...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if len(tx.shape) != 2 {
		b.shapeErr(op, "x must be 2-D", x)
		return b.placeholder(tx.shape...)
	}
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
	if b.failed() {
		s := shapeOf(table)
		if len(s) == 2 {
			return b.placeholder(len(ids), s[1])
		}
		return b.placeholder(len(ids), 0)
	}
	tt := b.get(op, table)
	if tt == nil {
		return b.placeholder(len(ids), 0)
	}
	if len(tt.shape) != 2 {
		b.shapeErr(op, "table must be [V, D]", table)
		return b.placeholder(len(ids), 0)
	}
	v, d := tt.shape[0], tt.shape[1]
	for i, id := range ids {
		if id < 0 || id >= v {
			b.setErr(fmt.Errorf("cpu: %s: id %d at position %d is outside the table's %d rows", op, id, i, v))
			return b.placeholder(len(ids), d)
		}
	}
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
	ph := func() compute.Tensor {
		s := append([]int(nil), shapeOf(x)...)
		if len(s) > 0 {
			s[0] = end - start
		}
		return b.placeholder(s...)
	}
	if b.failed() {
		return ph()
	}
	tx := b.get(op, x)
	if tx == nil {
		return ph()
	}
	if len(tx.shape) < 1 || start < 0 || end < start || end > tx.shape[0] {
		b.shapeErr(op, fmt.Sprintf("rows [%d, %d) out of range", start, end), x)
		return ph()
	}
	row := tx.numel() / max(tx.shape[0], 1)
	if tx.shape[0] == 0 {
		row = 0
	}
	src := b.rowValues(op, tx, start*row, end*row)
	if src == nil {
		return ph()
	}
	shape := append([]int(nil), tx.shape...)
	shape[0] = end - start
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
	ph := func() compute.Tensor {
		if len(ts) == 0 {
			return b.placeholder(0)
		}
		s := append([]int(nil), shapeOf(ts[0])...)
		if len(s) > 0 {
			s[0] = 0
			for _, t := range ts {
				if ss := shapeOf(t); len(ss) > 0 {
					s[0] += ss[0]
				}
			}
		}
		return b.placeholder(s...)
	}
	if b.failed() {
		return ph()
	}
	if len(ts) == 0 {
		b.shapeErr(op, "no tensors")
		return ph()
	}
	cts := make([]*Tensor, len(ts))
	for i, t := range ts {
		if cts[i] = b.get(op, t); cts[i] == nil {
			return ph()
		}
	}
	first := cts[0].shape
	if len(first) < 1 {
		b.shapeErr(op, "tensors must have at least one dimension", ts...)
		return ph()
	}
	rows := 0
	for _, t := range cts {
		if len(t.shape) != len(first) {
			b.shapeErr(op, "ranks differ", ts...)
			return ph()
		}
		for i := 1; i < len(first); i++ {
			if t.shape[i] != first[i] {
				b.shapeErr(op, "trailing dimensions differ", ts...)
				return ph()
			}
		}
		rows += t.shape[0]
	}
	shape := append([]int(nil), first...)
	shape[0] = rows
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
	s := shapeOf(row)
	d := 0
	if len(s) > 0 {
		d = s[len(s)-1]
	}
	if b.failed() {
		return b.placeholder(n, d)
	}
	tr := b.get(op, row)
	if tr == nil {
		return b.placeholder(n, d)
	}
	if n < 0 || !(len(tr.shape) == 1 || (len(tr.shape) == 2 && tr.shape[0] == 1)) {
		b.shapeErr(op, fmt.Sprintf("row must be [D] or [1, D] and n ≥ 0 (n = %d)", n), row)
		return b.placeholder(max(n, 0), d)
	}
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
	s := shapeOf(x)
	ph := func() compute.Tensor {
		if len(s) == 2 {
			return b.placeholder(s[0], end-start)
		}
		return b.placeholder(s...)
	}
	if b.failed() {
		return ph()
	}
	tx := b.get(op, x)
	if tx == nil {
		return ph()
	}
	if len(tx.shape) != 2 || start < 0 || end < start || end > tx.shape[1] {
		b.shapeErr(op, fmt.Sprintf("columns [%d, %d) of a 2-D tensor", start, end), x)
		return ph()
	}
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
