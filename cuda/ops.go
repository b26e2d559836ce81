package cuda

import (
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

// hostFn computes an op with backend c on operands in (host fallbacks).
type hostFn = func(c compute.Backend, in []compute.Tensor) compute.Tensor

func (b *Backend) unary(op string, k *kernel, x compute.Tensor, host hostFn) compute.Tensor {
	if !b.on(FamElementwise) {
		return b.onHost(op, host, x)
	}
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

func (b *Backend) binary(op string, k *kernel, x, y compute.Tensor, host hostFn) compute.Tensor {
	if !b.on(FamElementwise) {
		return b.onHost(op, host, x, y)
	}
	shape, rule := compute.SameShape(op, x, y)
	ts, ok := b.operands(op, rule, x, y)
	if !ok {
		return b.placeholder(shape...)
	}
	tx, ty := ts[0], ts[1]
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(k, n, func(l *launcher) { l.p(tx.ptr).p(ty.ptr).p(out.ptr).i(n) })
	})
}

// SiLU returns x·sigmoid(x).
func (b *Backend) SiLU(x compute.Tensor) compute.Tensor {
	return b.unary("SiLU", b.k.silu, x, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.SiLU(in[0]) })
}

// SwiGLU returns silu(gate)·up.
func (b *Backend) SwiGLU(gate, up compute.Tensor) compute.Tensor {
	return b.binary("SwiGLU", b.k.swiglu, gate, up, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.SwiGLU(in[0], in[1]) })
}

// Add returns a + c.
func (b *Backend) Add(a, c compute.Tensor) compute.Tensor {
	return b.binary("Add", b.k.add, a, c, func(h compute.Backend, in []compute.Tensor) compute.Tensor { return h.Add(in[0], in[1]) })
}

// Scale returns x·s + c.
func (b *Backend) Scale(x compute.Tensor, s, c float32) compute.Tensor {
	const op = "Scale"
	if !b.on(FamElementwise) {
		return b.onHost(op, func(h compute.Backend, in []compute.Tensor) compute.Tensor { return h.Scale(in[0], s, c) }, x)
	}
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

// Modulate returns x·(1 + scale) with scale broadcast over rows.
func (b *Backend) Modulate(x, scale compute.Tensor) compute.Tensor {
	const op = "Modulate"
	if !b.on(FamElementwise) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Modulate(in[0], in[1]) }, x, scale)
	}
	_, d, rule := compute.RowBroadcastShape(op, x, scale)
	in, ok := b.operands(op, rule, x, scale)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ts := in[0], in[1]
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(b.k.modulate, n, func(l *launcher) { l.p(tx.ptr).p(ts.ptr).p(out.ptr).i(n).i(d) })
	})
}

// GatedAdd returns x + tanh(gate)·y (gate broadcast over rows; nil is 1).
func (b *Backend) GatedAdd(x, y, gate compute.Tensor) compute.Tensor {
	const op = "GatedAdd"
	if !b.on(FamElementwise) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.GatedAdd(in[0], in[1], in[2]) }, x, y, gate)
	}
	if gate == nil {
		return b.binary(op, b.k.add, x, y, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Add(in[0], in[1]) })
	}
	_, rule := compute.GatedAddShape(x, y, gate)
	in, ok := b.operands(op, rule, x, y, gate)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, ty, tg := in[0], in[1], in[2]
	d := tx.shape[1]
	return b.exec(op, tx.shape, func(out *Tensor) error {
		n := tx.numel()
		return b.ew(b.k.gatedAdd, n, func(l *launcher) { l.p(tx.ptr).p(ty.ptr).p(tg.ptr).p(out.ptr).i(n).i(d) })
	})
}

// RMSNorm returns x·rsqrt(mean(x²)+eps)·w per row (float32 statistics).
func (b *Backend) RMSNorm(x, w compute.Tensor, eps float32) compute.Tensor {
	const op = "RMSNorm"
	if !b.on(FamNorm) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.RMSNorm(in[0], in[1], eps) }, x, w)
	}
	m, d, rule := compute.NormShape(op, x, w)
	ts, ok := b.operands(op, rule, x, w)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tw := ts[0], ts[1]
	var wp driver.DevicePtr
	if tw != nil {
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
	if !b.on(FamNorm) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.LayerNorm(in[0], eps) }, x)
	}
	m, d, rule := compute.NormShape(op, x, nil)
	ts, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx := ts[0]
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
	if act == 1 && !b.on(FamFusedGNSiLU) {
		n := b.groupNorm("GroupNorm", x, w, bias, groups, eps, 0)
		out := b.SiLU(n)
		b.Free(n)
		return out
	}
	if !b.on(FamGroupNorm) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor {
			n := c.GroupNorm(in[0], in[1], in[2], groups, eps)
			if act == 0 {
				return n
			}
			out := c.SiLU(n)
			c.Free(n)
			return out
		}, x, w, bias)
	}
	c, rule := compute.GroupNormShape(op, x, w, bias, groups)
	ts, ok := b.operands(op, rule, x, w, bias)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tw, tb := ts[0], ts[1], ts[2]
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
	if !b.on(FamRoPE) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor {
			return c.RoPE(in[0], in[1], in[2], heads, interleaved)
		}, x, cos, sin)
	}
	l, dh, rule := compute.RoPEShape(x, cos, sin, heads)
	in, ok := b.operands(op, rule, x, cos, sin)
	if !ok {
		return b.placeholder(shapeOf(x)...)
	}
	tx, tc, ts := in[0], in[1], in[2]
	half := dh / 2
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
	if !b.on(FamElementwise) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Upsample2x(in[0]) }, x)
	}
	shape, rule := compute.Upsample2xShape(x)
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shape...)
	}
	tx := xs[0]
	c, h, w := tx.shape[0], tx.shape[1], tx.shape[2]
	return b.exec(op, []int{c, 2 * h, 2 * w}, func(out *Tensor) error {
		return b.ew(b.k.upsample, 4*c*h*w, func(l *launcher) { l.p(tx.ptr).p(out.ptr).i(c).i(h).i(w) })
	})
}

// Transpose returns the transpose of a 2-D tensor.
func (b *Backend) Transpose(x compute.Tensor) compute.Tensor {
	const op = "Transpose"
	if !b.on(FamElementwise) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Transpose(in[0]) }, x)
	}
	shape, rule := compute.TransposeShape(x)
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shape...)
	}
	tx := xs[0]
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
	shape, rule := compute.EmbeddingShape(table, ids)
	ts, ok := b.operands(op, rule, table)
	if !ok {
		return b.placeholder(shape...)
	}
	tt, d := ts[0], shape[1]
	return b.exec(op, []int{len(ids), d}, func(out *Tensor) error {
		n := len(ids)
		if n == 0 || d == 0 {
			return nil
		}
		if tt.dt.IsQuantized() { // each row dequantized from its blocks (quant.go)
			rb, _ := tt.dt.RowBytes(d)
			for i, id := range ids {
				if err := b.dequant(tt.dt, tt.ptr+driver.DevicePtr(id*rb), b.off(out, i*d), d); err != nil {
					return err
				}
			}
			return nil
		}
		if !b.on(FamElementwise) {
			// Fallback without the gather kernel: a row copy per id (the
			// table may be the text encoder's 1.5 GB, too big to fetch).
			for i, id := range ids {
				if err := b.dtod(b.off(out, i*d), b.off(tt, id*d), d); err != nil {
					return err
				}
			}
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
	s, rule := compute.RowsShape(x, start, end)
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(s...)
	}
	tx := xs[0]
	row := tx.numel() / max(tx.shape[0], 1)
	return b.exec(op, s, func(out *Tensor) error {
		return b.dtod(out.ptr, b.off(tx, start*row), (end-start)*row)
	})
}

// Concat stacks tensors along their first axis.
func (b *Backend) Concat(ts ...compute.Tensor) compute.Tensor {
	const op = "Concat"
	s, rule := compute.ConcatShape(ts...)
	xs, ok := b.operands(op, rule, ts...)
	if !ok {
		return b.placeholder(s...)
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
	if !b.on(FamElementwise) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Repeat(in[0], n) }, row)
	}
	shape, rule := compute.RepeatShape(row, n)
	rs, ok := b.operands(op, rule, row)
	if !ok {
		return b.placeholder(shape...)
	}
	tr, d := rs[0], shape[1]
	return b.exec(op, []int{n, d}, func(out *Tensor) error {
		return b.copy2d(tr.ptr, out.ptr, n, d, 0, d)
	})
}

// Slice returns columns [start, end) of x [M, N].
func (b *Backend) Slice(x compute.Tensor, start, end int) compute.Tensor {
	const op = "Slice"
	if !b.on(FamElementwise) {
		return b.onHost(op, func(c compute.Backend, in []compute.Tensor) compute.Tensor { return c.Slice(in[0], start, end) }, x)
	}
	shape, rule := compute.SliceShape(x, start, end)
	xs, ok := b.operands(op, rule, x)
	if !ok {
		return b.placeholder(shape...)
	}
	tx, m := xs[0], shape[0]
	nc := tx.shape[1]
	return b.exec(op, []int{m, end - start}, func(out *Tensor) error {
		return b.copy2d(b.off(tx, start), out.ptr, m, end-start, nc, end-start)
	})
}
