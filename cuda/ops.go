package cuda

import (
	"fmt"
	"slices"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/zimage/compute"
)

// off returns the address of element i of t.
func (b *Backend) off(t *Tensor, i int) driver.DevicePtr {
	return t.ptr + driver.DevicePtr(i*b.esize)
}

// ew launches a 1-D grid-stride kernel over n elements with the arguments
// that pack adds.
func (b *Backend) ew(k *kernel, n int, pack func(l *launcher)) error {
	if n == 0 {
		return nil
	}
	g, bl := b.d.gridFor(n)
	pack(b.d.args.reset())
	return b.d.launch(k, g, bl, 0)
}

func (b *Backend) unary(op string, k *kernel, x compute.Tensor) compute.Tensor {
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(shapeOf(x)...)
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(k, n, func(l *launcher) { l.p(tx.ptr).p(out.ptr).i(n) })
	})
}

func (b *Backend) binary(op string, k *kernel, x, y compute.Tensor) compute.Tensor {
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ty := b.get(op, x), b.get(op, y)
	if tx == nil || ty == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if !slices.Equal(tx.shape, ty.shape) {
		b.shapeErr(op, "shapes differ", x, y)
		return b.placeholder(tx.shape...)
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(k, n, func(l *launcher) { l.p(tx.ptr).p(ty.ptr).p(out.ptr).i(n) })
	})
}

// SiLU returns x·sigmoid(x).
func (b *Backend) SiLU(x compute.Tensor) compute.Tensor { return b.unary("SiLU", b.k.silu, x) }

// SwiGLU returns silu(gate)·up.
func (b *Backend) SwiGLU(gate, up compute.Tensor) compute.Tensor {
	return b.binary("SwiGLU", b.k.swiglu, gate, up)
}

// Add returns a + c.
func (b *Backend) Add(a, c compute.Tensor) compute.Tensor { return b.binary("Add", b.k.add, a, c) }

// Scale returns x·s + c.
func (b *Backend) Scale(x compute.Tensor, s, c float32) compute.Tensor {
	const op = "Scale"
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(shapeOf(x)...)
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(b.k.scale, n, func(l *launcher) { l.p(tx.ptr).p(out.ptr).i(n).f(s).f(c) })
	})
}

// rowBroadcast checks x [M, D] against a vector [D] or [1, D].
func (b *Backend) rowBroadcast(op string, x, vec *Tensor, ts ...compute.Tensor) (d int, ok bool) {
	if len(x.shape) != 2 {
		b.shapeErr(op, "x must be 2-D [M, D]", ts...)
		return 0, false
	}
	d = x.shape[1]
	if vec.numel() != d || (len(vec.shape) != 1 && !(len(vec.shape) == 2 && vec.shape[0] == 1)) {
		b.shapeErr(op, fmt.Sprintf("vector must be [%d] or [1, %d]", d, d), ts...)
		return 0, false
	}
	return d, true
}

// Modulate returns x·(1 + scale) with scale broadcast over rows.
func (b *Backend) Modulate(x, scale compute.Tensor) compute.Tensor {
	const op = "Modulate"
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ts := b.get(op, x), b.get(op, scale)
	if tx == nil || ts == nil {
		return b.placeholder(shapeOf(x)...)
	}
	d, ok := b.rowBroadcast(op, tx, ts, x, scale)
	if !ok {
		return b.placeholder(tx.shape...)
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(b.k.modulate, n, func(l *launcher) { l.p(tx.ptr).p(ts.ptr).p(out.ptr).i(n).i(d) })
	})
}

// GatedAdd returns x + tanh(gate)·y (gate broadcast over rows; nil is 1).
func (b *Backend) GatedAdd(x, y, gate compute.Tensor) compute.Tensor {
	const op = "GatedAdd"
	if gate == nil {
		return b.binary(op, b.k.add, x, y)
	}
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ty, tg := b.get(op, x), b.get(op, y), b.get(op, gate)
	if tx == nil || ty == nil || tg == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if !slices.Equal(tx.shape, ty.shape) {
		b.shapeErr(op, "x and y shapes differ", x, y, gate)
		return b.placeholder(tx.shape...)
	}
	d, ok := b.rowBroadcast(op, tx, tg, x, y, gate)
	if !ok {
		return b.placeholder(tx.shape...)
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(b.k.gatedAdd, n, func(l *launcher) { l.p(tx.ptr).p(ty.ptr).p(tg.ptr).p(out.ptr).i(n).i(d) })
	})
}

// rows returns the row count and length of x viewed as [M, D] (D the last
// dimension).
func (b *Backend) rows(op string, x *Tensor, ts ...compute.Tensor) (m, d int, ok bool) {
	if len(x.shape) < 1 || x.shape[len(x.shape)-1] == 0 {
		b.shapeErr(op, "x must have a non-empty last dimension", ts...)
		return 0, 0, false
	}
	d = x.shape[len(x.shape)-1]
	return x.numel() / d, d, true
}

// RMSNorm returns x·rsqrt(mean(x²)+eps)·w per row (float32 statistics).
func (b *Backend) RMSNorm(x, w compute.Tensor, eps float32) compute.Tensor {
	const op = "RMSNorm"
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(shapeOf(x)...)
	}
	m, d, ok := b.rows(op, tx, x, w)
	if !ok {
		return b.placeholder(tx.shape...)
	}
	var wp driver.DevicePtr
	if w != nil {
		tw := b.get(op, w)
		if tw == nil {
			return b.placeholder(tx.shape...)
		}
		if tw.numel() != d {
			b.shapeErr(op, fmt.Sprintf("weight must have %d elements", d), x, w)
			return b.placeholder(tx.shape...)
		}
		wp = tw.ptr
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		if m == 0 {
			return nil
		}
		b.d.args.reset().p(tx.ptr).p(wp).p(out.ptr).i(m).i(d).f(eps)
		return b.d.launch(b.k.rmsnorm, dim3{uint32((m + b.d.block/32 - 1) / (b.d.block / 32)), 1, 1}, b.d.threads(), 0)
	})
}

// LayerNorm returns (x-mean)·rsqrt(var+eps) per row, no affine.
func (b *Backend) LayerNorm(x compute.Tensor, eps float32) compute.Tensor {
	const op = "LayerNorm"
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(shapeOf(x)...)
	}
	m, d, ok := b.rows(op, tx, x)
	if !ok {
		return b.placeholder(tx.shape...)
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		if m == 0 {
			return nil
		}
		b.d.args.reset().p(tx.ptr).p(out.ptr).i(m).i(d).f(eps)
		return b.d.launch(b.k.layernorm, dim3{uint32((m + b.d.block/32 - 1) / (b.d.block / 32)), 1, 1}, b.d.threads(), 0)
	})
}

// GroupNorm normalises x [C, ...] in groups of C/groups channels, then
// applies w[c], bias[c].
func (b *Backend) GroupNorm(x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	return b.groupNorm("GroupNorm", x, w, bias, groups, eps, 0)
}

// GroupNormSiLU returns SiLU(GroupNorm(x, w, bias, groups, eps)) in one pass
// over x after the statistics (fused.Ops).
func (b *Backend) GroupNormSiLU(x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	return b.groupNorm("GroupNormSiLU", x, w, bias, groups, eps, 1)
}

// groupNorm is GroupNorm, followed by SiLU when act is 1.
func (b *Backend) groupNorm(op string, x, w, bias compute.Tensor, groups int, eps float32, act int) compute.Tensor {
	if b.failed() {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tw, tb := b.get(op, x), b.get(op, w), b.get(op, bias)
	if tx == nil || tw == nil || tb == nil {
		return b.placeholder(shapeOf(x)...)
	}
	if len(tx.shape) < 2 {
		b.shapeErr(op, "x must be [C, H, W]", x, w, bias)
		return b.placeholder(tx.shape...)
	}
	c := tx.shape[0]
	if groups <= 0 || c%groups != 0 {
		b.shapeErr(op, fmt.Sprintf("%d channels do not split into %d groups", c, groups), x, w, bias)
		return b.placeholder(tx.shape...)
	}
	if tw.numel() != c || tb.numel() != c || len(tw.shape) != 1 || len(tb.shape) != 1 {
		b.shapeErr(op, fmt.Sprintf("weight and bias must be [%d]", c), x, w, bias)
		return b.placeholder(tx.shape...)
	}
	hw := tx.numel() / c
	glen := c / groups * hw
	if glen == 0 {
		return b.exec(op, tx.shape, func(*Tensor) error { return nil })
	}
	// Enough chunks to fill the GPU twice over, each at least 1024 values.
	sms := max(b.d.props.SMs, 1)
	chunks := max(1, min(64, (2*sms+groups-1)/groups, glen/1024))
	apply := max(1, min((glen+8*b.d.block-1)/(8*b.d.block), (4*sms+groups-1)/groups))
	return b.exec(op, tx.shape, func(out *Tensor) error {
		part, err := b.d.alloc(uint64(8 * groups * chunks))
		if err != nil {
			return err
		}
		defer b.d.free(part)
		b.d.args.reset().p(tx.ptr).p(part).i(c).i(hw).i(groups).i(chunks)
		if err := b.d.launch(b.k.gnStats, dim3{uint32(chunks), uint32(groups), 1}, b.d.threads(), 0); err != nil {
			return err
		}
		b.d.args.reset().p(tx.ptr).p(part).p(tw.ptr).p(tb.ptr).p(out.ptr).i(c).i(hw).i(groups).i(chunks).f(eps).i(act)
		return b.d.launch(b.k.gnApply, dim3{uint32(apply), uint32(groups), 1}, b.d.threads(), 0)
	})
}

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
	if len(tx.shape) != 2 || heads <= 0 || tx.shape[1]%heads != 0 || (tx.shape[1]/heads)%2 != 0 {
		b.shapeErr(op, fmt.Sprintf("x must be [L, heads·dh] with %d heads and even dh", heads), x, cos, sin)
		return b.placeholder(tx.shape...)
	}
	l, dh := tx.shape[0], tx.shape[1]/heads
	half := dh / 2
	if len(tc.shape) != 2 || tc.shape[0] != l || tc.shape[1] != half || len(ts.shape) != 2 || ts.shape[0] != l || ts.shape[1] != half {
		b.shapeErr(op, fmt.Sprintf("cos and sin must be [%d, %d]", l, half), x, cos, sin)
		return b.placeholder(tx.shape...)
	}
	il := 0
	if interleaved {
		il = 1
	}
	return b.exec(op, tx.shape, func(out *Tensor) error {
		return b.ew(b.k.rope, l*heads*half, func(lp *launcher) {
			lp.p(tx.ptr).p(tc.ptr).p(ts.ptr).p(out.ptr).i(l).i(heads).i(dh).i(il)
		})
	})
}

// Upsample2x is nearest-neighbour upsampling [C, H, W] → [C, 2H, 2W].
func (b *Backend) Upsample2x(x compute.Tensor) compute.Tensor {
	const op = "Upsample2x"
	s := shapeOf(x)
	if b.failed() {
		if len(s) == 3 {
			return b.placeholder(s[0], 2*s[1], 2*s[2])
		}
		return b.placeholder(s...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(s...)
	}
	if len(tx.shape) != 3 {
		b.shapeErr(op, "x must be [C, H, W]", x)
		return b.placeholder(tx.shape...)
	}
	c, h, w := tx.shape[0], tx.shape[1], tx.shape[2]
	return b.exec(op, []int{c, 2 * h, 2 * w}, func(out *Tensor) error {
		return b.ew(b.k.upsample, 4*c*h*w, func(l *launcher) { l.p(tx.ptr).p(out.ptr).i(c).i(h).i(w) })
	})
}

// Transpose returns the transpose of a 2-D tensor.
func (b *Backend) Transpose(x compute.Tensor) compute.Tensor {
	const op = "Transpose"
	s := shapeOf(x)
	if b.failed() {
		if len(s) == 2 {
			return b.placeholder(s[1], s[0])
		}
		return b.placeholder(s...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(s...)
	}
	if len(tx.shape) != 2 {
		b.shapeErr(op, "x must be 2-D", x)
		return b.placeholder(tx.shape...)
	}
	r, c := tx.shape[0], tx.shape[1]
	return b.exec(op, []int{c, r}, func(out *Tensor) error {
		if r == 0 || c == 0 {
			return nil
		}
		b.d.args.reset().p(tx.ptr).p(out.ptr).i(r).i(c)
		return b.d.launch(b.k.transpose, dim3{uint32((c + 31) / 32), uint32((r + 31) / 32), 1}, dim3{32, 8, 1}, 0)
	})
}

// copy2d copies rows×cols elements between row-major layouts.
func (b *Backend) copy2d(src, dst driver.DevicePtr, rows, cols, lds, ldd int) error {
	return b.ew(b.k.copy2d, rows*cols, func(l *launcher) { l.p(src).p(dst).i(rows).i(cols).i(lds).i(ldd) })
}

// Embedding gathers rows ids of table [V, D].
func (b *Backend) Embedding(table compute.Tensor, ids []int) compute.Tensor {
	const op = "Embedding"
	s := shapeOf(table)
	d := 0
	if len(s) == 2 {
		d = s[1]
	}
	if b.failed() {
		return b.placeholder(len(ids), d)
	}
	tt := b.get(op, table)
	if tt == nil {
		return b.placeholder(len(ids), d)
	}
	if len(tt.shape) != 2 {
		b.shapeErr(op, "table must be [V, D]", table)
		return b.placeholder(len(ids), 0)
	}
	v := tt.shape[0]
	for i, id := range ids {
		if id < 0 || id >= v {
			b.setErr(fmt.Errorf("cuda: %s: id %d at position %d is outside the table's %d rows", op, id, i, v))
			return b.placeholder(len(ids), d)
		}
	}
	return b.exec(op, []int{len(ids), d}, func(out *Tensor) error {
		n := len(ids)
		if n == 0 || d == 0 {
			return nil
		}
		buf, err := b.d.alloc(uint64(4 * n))
		if err != nil {
			return err
		}
		defer b.d.free(buf)
		h, err := b.d.stage(0)
		if err != nil {
			return err
		}
		for i, id := range ids {
			v := uint32(int32(id))
			h.b[4*i], h.b[4*i+1], h.b[4*i+2], h.b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		if err := b.d.api.Check("cuMemcpyHtoDAsync_v2", b.d.api.MemcpyHtoDAsync(buf, h.p, uint64(4*n), b.d.stream)); err != nil {
			return err
		}
		if err := b.d.staged(0); err != nil {
			return err
		}
		return b.ew(b.k.gather, n*d, func(l *launcher) { l.p(tt.ptr).p(buf).p(out.ptr).i(n).i(d) })
	})
}

// dtod enqueues a device-to-device copy of n elements.
func (b *Backend) dtod(dst, src driver.DevicePtr, n int) error {
	if n == 0 {
		return nil
	}
	return b.d.api.Check("cuMemcpyDtoDAsync_v2", b.d.api.MemcpyDtoDAsync(dst, src, uint64(n*b.esize), b.d.stream))
}

// Rows returns a copy of rows [start, end) of x [M, ...].
func (b *Backend) Rows(x compute.Tensor, start, end int) compute.Tensor {
	const op = "Rows"
	s := slices.Clone(shapeOf(x))
	if len(s) > 0 {
		s[0] = max(end-start, 0)
	}
	if b.failed() {
		return b.placeholder(s...)
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(s...)
	}
	if len(tx.shape) < 1 || start < 0 || end < start || end > tx.shape[0] {
		b.shapeErr(op, fmt.Sprintf("rows [%d, %d) out of range", start, end), x)
		return b.placeholder(s...)
	}
	row := tx.numel() / max(tx.shape[0], 1)
	return b.exec(op, s, func(out *Tensor) error {
		return b.dtod(out.ptr, b.off(tx, start*row), (end-start)*row)
	})
}

// Concat stacks tensors along their first axis.
func (b *Backend) Concat(ts ...compute.Tensor) compute.Tensor {
	const op = "Concat"
	if len(ts) == 0 {
		b.shapeErr(op, "no tensors")
		return b.placeholder(0)
	}
	s := slices.Clone(shapeOf(ts[0]))
	if len(s) > 0 {
		s[0] = 0
		for _, t := range ts {
			if ts := shapeOf(t); len(ts) > 0 {
				s[0] += ts[0]
			}
		}
	}
	if b.failed() {
		return b.placeholder(s...)
	}
	xs := make([]*Tensor, len(ts))
	for i, t := range ts {
		if xs[i] = b.get(op, t); xs[i] == nil {
			return b.placeholder(s...)
		}
	}
	if len(xs[0].shape) < 1 {
		b.shapeErr(op, "tensors must have at least one dimension", ts...)
		return b.placeholder(s...)
	}
	for _, x := range xs[1:] {
		if len(x.shape) != len(xs[0].shape) {
			b.shapeErr(op, "ranks differ", ts...)
			return b.placeholder(s...)
		}
		if !slices.Equal(x.shape[1:], xs[0].shape[1:]) {
			b.shapeErr(op, "trailing dimensions differ", ts...)
			return b.placeholder(s...)
		}
	}
	return b.exec(op, s, func(out *Tensor) error {
		at := 0
		for _, x := range xs {
			if err := b.dtod(b.off(out, at), x.ptr, x.numel()); err != nil {
				return err
			}
			at += x.numel()
		}
		return nil
	})
}

// Repeat stacks n copies of row [D] or [1, D] → [n, D].
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
	return b.exec(op, []int{n, d}, func(out *Tensor) error {
		return b.copy2d(tr.ptr, out.ptr, n, d, 0, d)
	})
}

// Slice returns columns [start, end) of x [M, N].
func (b *Backend) Slice(x compute.Tensor, start, end int) compute.Tensor {
	const op = "Slice"
	s := shapeOf(x)
	m := 0
	if len(s) == 2 {
		m = s[0]
	}
	if b.failed() {
		return b.placeholder(m, max(end-start, 0))
	}
	tx := b.get(op, x)
	if tx == nil {
		return b.placeholder(m, max(end-start, 0))
	}
	if len(tx.shape) != 2 || start < 0 || end < start || end > tx.shape[1] {
		b.shapeErr(op, fmt.Sprintf("columns [%d, %d) out of range of a 2-D tensor", start, end), x)
		return b.placeholder(m, max(end-start, 0))
	}
	nc := tx.shape[1]
	return b.exec(op, []int{m, end - start}, func(out *Tensor) error {
		return b.copy2d(b.off(tx, start), out.ptr, m, end-start, nc, end-start)
	})
}
