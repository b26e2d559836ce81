package cuda

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// kernelSet holds the kernels of the backend's dtype, resolved once.
type kernelSet struct {
	silu, swiglu, add, scale, modulate, gatedAdd, chanBias *kernel
	upsample, copy2d, transpose, gather, im2col            *kernel
	im2colS2                                               *kernel // Downsample2D (downsample.go)
	rmsnorm, layernorm, gnStats, gnApply, rope, softmax    *kernel
	rmsnormEx, headNormRoPE                                *kernel // fused chains (fusedops.go)
	fill                                                   *kernel // synthetic weights
	softmaxWarp                                            *kernel // one warp per row
	toF32                                                  *kernel // dt → f32 (nil when dt is f32)
	cvt                                                    map[weights.DType]*kernel
	flashGeneric                                           *kernel         // fused attention, any head size
	tc                                                     map[int]*kernel // tensor-core attention by head size (bf16; optional)

	dequant map[weights.DType]*kernel // ggml blocks → dt (quant.go)
}

var dtypeSuffix = map[weights.DType]string{
	weights.F32: "f32", weights.BF16: "bf16", weights.F16: "f16",
	weights.F8E4M3: "f8e4m3", weights.F8E5M2: "f8e5m2",
}

func (k *kernelSet) resolve(d *Device, dt weights.DType) error {
	s := dtypeSuffix[dt]
	var missing []string
	get := func(name string) *kernel {
		kk := d.kernel(name)
		if kk == nil {
			missing = append(missing, name)
		}
		return kk
	}
	k.silu, k.swiglu, k.add, k.scale = get("zk_silu_"+s), get("zk_swiglu_"+s), get("zk_add_"+s), get("zk_scale_"+s)
	k.modulate, k.gatedAdd, k.chanBias = get("zk_modulate_"+s), get("zk_gated_add_"+s), get("zk_chan_bias_"+s)
	k.upsample, k.copy2d, k.transpose = get("zk_upsample2x_"+s), get("zk_copy2d_"+s), get("zk_transpose_"+s)
	k.gather, k.im2col, k.im2colS2 = get("zk_gather_"+s), get("zk_im2col_"+s), get("zk_im2col_s2_"+s)
	k.rmsnorm, k.layernorm, k.gnStats, k.gnApply = get("zk_rmsnorm_"+s), get("zk_layernorm_"+s), get("zk_gn_stats_"+s), get("zk_gn_apply_"+s)
	k.rope, k.softmax, k.fill = get("zk_rope_"+s), get("zk_softmax_"+s), get("zk_fill_uniform_"+s)
	k.softmaxWarp = get("zk_softmax_warp_" + s)
	k.rmsnormEx, k.headNormRoPE = get("zk_rmsnorm_ex_"+s), get("zk_head_norm_rope_"+s)
	k.cvt = map[weights.DType]*kernel{}
	for src, ss := range dtypeSuffix {
		if src != dt {
			k.cvt[src] = get("zk_cvt_" + ss + "_" + s)
		}
	}
	if dt != weights.F32 {
		k.toF32 = get("zk_cvt_" + s + "_f32")
	}
	k.flashGeneric = get("zk_flash_attn_" + s)
	k.resolveDequant(get, s)
	k.tc = map[int]*kernel{}
	if dt == weights.BF16 {
		for _, dh := range []int{128, 256, 512} {
			if kk := d.kernel(tcKernelName(dh)); kk != nil {
				k.tc[dh] = kk
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cuda: the embedded fatbin lacks kernels %v", missing)
	}
	return nil
}

// stage waits until pinned staging slot is free again and returns it.
func (d *Device) stage(slot int) (hostBuf, error) {
	if err := d.api.Check("cuEventSynchronize", d.api.EventSynchronize(d.evs[slot])); err != nil {
		return hostBuf{}, err
	}
	return d.host[slot], nil
}

// staged marks slot busy until the work queued so far finishes.
func (d *Device) staged(slot int) error {
	return d.api.Check("cuEventRecord", d.api.EventRecord(d.evs[slot], d.stream))
}

// upload copies src, elements of dtype st, to dst of dtype dt through the two
// pinned staging buffers (the copy of one chunk overlaps the transfer of the
// previous one), converting on the device when the dtypes differ.
func (b *Backend) upload(dst driver.DevicePtr, dt weights.DType, src []byte, st weights.DType) error {
	d := b.d
	es := st.Size()
	var cvt *kernel
	if st != dt {
		if cvt = b.k.cvt[st]; cvt == nil {
			return fmt.Errorf("no conversion from %v to %v", st, dt)
		}
	}
	chunk := stagingBytes / es * es
	for i, off := 0, 0; off < len(src); i, off = i+1, off+chunk {
		n := min(chunk, len(src)-off)
		slot := i % 2
		h, err := d.stage(slot)
		if err != nil {
			return err
		}
		copyParallel(h.b[:n], src[off:off+n])
		at := dst + driver.DevicePtr(off/es*dt.Size())
		if cvt == nil {
			err = d.api.Check("cuMemcpyHtoDAsync_v2", d.api.MemcpyHtoDAsync(at, h.p, uint64(n), d.stream))
		} else {
			err = d.api.Check("cuMemcpyHtoDAsync_v2", d.api.MemcpyHtoDAsync(d.devs[slot], h.p, uint64(n), d.stream))
			if err == nil {
				elems := n / es
				g, bl := d.gridFor(elems)
				d.args.reset().p(d.devs[slot]).p(at).i(elems)
				err = d.launch(cvt, g, bl, 0)
			}
		}
		if err != nil {
			return err
		}
		if err := d.staged(slot); err != nil {
			return err
		}
	}
	return nil
}

// download copies n elements of dtype dt at src to host float32.
func (b *Backend) download(out []float32, src driver.DevicePtr, dt weights.DType) error {
	d := b.d
	if err := d.sync(); err != nil {
		return err
	}
	chunk := stagingBytes / 4
	for off := 0; off < len(out); off += chunk {
		n := min(chunk, len(out)-off)
		h := d.host[0]
		from := src + driver.DevicePtr(off*dt.Size())
		if dt != weights.F32 {
			g, bl := d.gridFor(n)
			d.args.reset().p(from).p(d.devs[0]).i(n)
			if err := d.launch(b.k.toF32, g, bl, 0); err != nil {
				return err
			}
			from = d.devs[0]
		}
		if err := d.api.Check("cuMemcpyDtoHAsync_v2", d.api.MemcpyDtoHAsync(h.p, from, uint64(4*n), d.stream)); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[off])), 4*n), h.b[:4*n])
	}
	return nil
}

// copyParallel copies large buffers with several goroutines (the source is
// usually a freshly mapped checkpoint, so the copy is bound by page faults).
func copyParallel(dst, src []byte) {
	const part = 8 << 20
	if len(src) <= 2*part {
		copy(dst, src)
		return
	}
	parts := (len(src) + part - 1) / part
	done := make(chan struct{}, parts)
	for i := range parts {
		go func(lo int) {
			hi := min(lo+part, len(src))
			copy(dst[lo:hi], src[lo:hi])
			done <- struct{}{}
		}(i * part)
	}
	for range parts {
		<-done
	}
}

// Weight uploads a checkpoint tensor to the device in the backend's dtype
// (float32 checkpoints are rounded to bfloat16 to nearest even, F16 and F8
// widened, on the device).
func (b *Backend) Weight(w *weights.Tensor) compute.Tensor {
	if w == nil {
		b.setErr(errors.New("cuda: Weight: nil weights.Tensor"))
		return b.placeholder(0)
	}
	shape := slices.Clone(w.Shape)
	if b.failed() {
		return b.placeholder(shape...)
	}
	if w.DType.IsQuantized() && w.Data != nil { // kept in its blocks (quant.go)
		return b.weightQuant(w)
	}
	// A data-less quantized weight (a synthetic benchmark) is filled expanded.
	if _, ok := dtypeSuffix[w.DType]; !ok && !(w.Data == nil && b.synth && w.DType.IsQuantized()) {
		b.setErr(fmt.Errorf("cuda: Weight: tensor %q has dtype %v, want F32, BF16, F16, F8 or a ggml block type", w.Name, w.DType))
		return b.placeholder(shape...)
	}
	for _, d := range shape {
		if d < 0 {
			b.setErr(fmt.Errorf("cuda: Weight: tensor %q has negative dimension in shape %v", w.Name, shape))
			return b.placeholder(0)
		}
	}
	if w.Data == nil && b.synth {
		return b.exec("Weight", shape, func(out *Tensor) error { return b.fillSynthetic(out, w) })
	}
	if want := numel(shape) * w.DType.Size(); len(w.Data) != want {
		b.setErr(fmt.Errorf("cuda: Weight: tensor %q %v %v has %d bytes, want %d", w.Name, w.DType, shape, len(w.Data), want))
		return b.placeholder(shape...)
	}
	t := b.exec("Weight", shape, func(out *Tensor) error {
		return b.upload(out.ptr, b.dt, w.Data, w.DType)
	})
	if err := b.Err(); err != nil && t.(*Tensor).placeholder {
		b.mu.Lock()
		if b.err == err {
			b.err = fmt.Errorf("%w (tensor %q)", err, w.Name)
		}
		b.mu.Unlock()
	}
	return t
}

// fillSynthetic fills a data-less weight with uniform values: biases and pad
// tokens small around 0, other vectors (norm gains) around 1, matrices with
// variance 1/fan-in. The seed is a hash of the name.
func (b *Backend) fillSynthetic(out *Tensor, w *weights.Tensor) error {
	n := out.numel()
	var scale, offset float32
	switch {
	case strings.HasSuffix(w.Name, "bias") || strings.Contains(w.Name, "pad_token"):
		scale = 0.02
	case len(w.Shape) == 1:
		scale, offset = 0.05, 1
	default:
		fanIn := n / max(w.Shape[0], 1)
		scale = float32(math.Sqrt(3 / float64(max(fanIn, 1))))
	}
	h := fnv.New32a()
	h.Write([]byte(w.Name))
	seed := int(int32(h.Sum32()))
	return b.ew(b.k.fill, n, func(l *launcher) { l.p(out.ptr).i(n).i(seed).f(scale).f(offset) })
}

// FromHost copies float32 host data to a new device tensor.
func (b *Backend) FromHost(data []float32, shape ...int) compute.Tensor {
	if b.failed() {
		return b.placeholder(shape...)
	}
	for _, d := range shape {
		if d < 0 {
			b.setErr(&compute.ShapeError{Op: "FromHost", Shapes: [][]int{shape}, Reason: "negative dimension"})
			return b.placeholder(shape...)
		}
	}
	if numel(shape) != len(data) {
		b.setErr(&compute.ShapeError{Op: "FromHost", Shapes: [][]int{shape},
			Reason: fmt.Sprintf("shape has %d elements, data has %d", numel(shape), len(data))})
		return b.placeholder(shape...)
	}
	return b.exec("FromHost", shape, func(out *Tensor) error {
		if len(data) == 0 {
			return nil
		}
		return b.upload(out.ptr, b.dt, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data)), weights.F32)
	})
}

// ToHost copies t to the host as float32 (zeros after an error).
func (b *Backend) ToHost(t compute.Tensor) []float32 {
	n := numel(shapeOf(t))
	out := make([]float32, n)
	if b.failed() {
		return out
	}
	x := b.get("ToHost", t)
	if x == nil || n == 0 {
		return out
	}
	if x.dt.IsQuantized() {
		var err error
		if x, err = b.expanded(x); err != nil {
			b.setErr(fmt.Errorf("cuda: ToHost: %w", err))
			return out
		}
		defer b.dropTemp(x)
	}
	if err := b.d.Do(func() error { return b.download(out, x.ptr, x.dt) }); err != nil {
		b.setErr(fmt.Errorf("cuda: ToHost: %w", err))
		clear(out)
	}
	return out
}
