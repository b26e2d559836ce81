// Package cuda is the GPU implementation of compute.Backend: the CUDA driver
// API and cuBLASLt bound at run time through purego (no cgo), kernels from
// the embedded fatbin of cuda/kernels, device memory owned explicitly.
//
// Activations and weights live on the device in one dtype: bfloat16 (the
// default; float32 accumulation and float32 norm statistics) or float32
// (for tight parity tests); GGUF weights stay in their ggml blocks and are
// dequantized per MatMul (quant.go). GEMMs and convolutions (im2col + GEMM) run
// through cuBLASLt. Attention is fused (no score matrix): tensor-core
// kernels for the bf16 head sizes 128 (DiT, Qwen3), 256 and 512 (VAE
// mid-block), a generic float32-arithmetic kernel for everything else.
// Beyond compute.Backend, the backend implements fused.Ops (package
// cuda/fused): one-pass kernels for the networks' norm and elementwise
// chains, which graphs reach through the helpers of that package.
//
// Before first use on a device New runs a kernel self-test (selftest.go):
// every kernel family against the CPU backend on small inputs; a family
// that fails is disabled for the backend's life and its ops take a
// fallback (families.go). The outcome is cached on disk per device, driver
// and fatbin; Options.SelfTest and ZIMAGE_SELFTEST=off|force|auto control it.
//
// All CUDA work runs on one goroutine locked to its OS thread with the
// device's primary context current (Device.Do). Ops may be called from one
// goroutine at a time; Err, ResetErr and SetContext are safe from any.
package cuda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Re-exported errors of the initialisation ladder (errors.Is).
var (
	ErrNoDriver          = driver.ErrNoDriver
	ErrDriverTooOld      = driver.ErrDriverTooOld
	ErrNoDevice          = driver.ErrNoDevice
	ErrUnsupportedDevice = driver.ErrUnsupportedDevice
	ErrNoCuBLASLt        = blaslt.ErrNoLibrary
)

// Precision selects the device dtype of activations and weights.
type Precision int

const (
	// BF16 keeps tensors in bfloat16 with float32 accumulation (default).
	BF16 Precision = iota
	// F32 keeps everything in float32 (parity tests; twice the memory).
	F32
)

func (p Precision) String() string {
	if p == F32 {
		return "f32"
	}
	return "bf16"
}

// Options configure New.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// Precision of device tensors (BF16 by default).
	Precision Precision
	// MemoryBudget caps the device memory this backend allocates, in bytes
	// (0: no cap beyond the device's). Exceeding it is a *BudgetError, which
	// matches ErrOutOfMemory; the backend stays usable.
	MemoryBudget uint64
	// Attention selects the attention implementation: "" or "auto" (fused
	// kernels: on tensor cores for bf16 head sizes 128, 256 and 512, the
	// generic fused kernel otherwise), "generic" (the generic fused kernel,
	// float32 arithmetic, for every head size; comparisons), "gemm" (always
	// cuBLASLt GEMMs with a row softmax, in query chunks, which materialises
	// a chunk of the score matrix).
	Attention string
	// Logger receives debug information; nil discards it.
	Logger *slog.Logger
	// SyntheticWeights makes Weight accept tensors without data (see package
	// cuda/synthetic) and fill them on the device with deterministic
	// pseudo-random values of a plausible scale: full-size benchmarks without
	// a checkpoint.
	SyntheticWeights bool
	// BlockThreads is the block size of the 1-D kernels (0: 256). Tests that
	// run the kernels on the host shim use 32 (one warp).
	BlockThreads int

	// SelfTest says whether New runs the kernel self-test (selftest.go);
	// SelfTestCache is the directory of its cached results ("":
	// os.UserCacheDir()/zimage/selftest).
	SelfTest      SelfTestMode
	SelfTestCache string
	// Disable turns kernel families off from the start, whatever the
	// self-test finds (a workaround for a kernel bug it misses); with the
	// system driver, ZIMAGE_CUDA_DISABLE=fam1,fam2 adds to it.
	Disable []Family

	// Driver and BLAS replace the system libraries (tests, embedding); nil
	// loads libcuda.so.1 and libcublasLt.
	Driver *driver.API
	BLAS   *blaslt.API
}

// Available reports whether a usable CUDA GPU is present: the driver loads,
// is new enough, has a device of compute capability 8.0 or newer, and
// cuBLASLt loads. The result is cached. A nil error means New(Options{})
// should succeed.
func Available() error {
	availOnce.Do(func() { availErr = probe() })
	return availErr
}

var (
	availOnce sync.Once
	availErr  error
)

func probe() error {
	api, err := driver.Probe()
	if err != nil {
		return err
	}
	if _, _, err := driver.DeviceProps(api, 0); err != nil {
		return err
	}
	if _, _, err := blaslt.Load(); err != nil {
		return err
	}
	return nil
}

// Backend implements compute.Backend on one CUDA device.
type Backend struct {
	d     *Device
	dt    weights.DType // BF16 or F32
	esize int
	k     kernelSet
	flash bool // some tensor-core attention kernel is enabled
	// attention: the mode (attnAuto, ...), the enabled tensor-core kernels
	// by head size, the generic kernel's shared-memory limit
	attn           int
	tc             map[int]*kernel
	genericSmemMax int
	synth          bool
	log            *slog.Logger

	// Kernel families turned off by the self-test (families.go,
	// selftest.go), the CPU backend of their host fallbacks, and the
	// self-test's outcome.
	fam      families
	hostOnce sync.Once
	hostCPU  *cpu.Backend
	selfTest *SelfTestReport

	// Quantized weights (quant.go): the dequantization scratch and the
	// temporary expansions of the current op's operands.
	qscratch  driver.DevicePtr
	qscratchN uint64
	temps     []*Tensor

	mu  sync.Mutex
	err error
	ctx context.Context
}

var _ compute.Backend = (*Backend)(nil)

// New opens device opts.Device and returns a backend on it. It fails with
// errors matching ErrNoDriver, ErrDriverTooOld, ErrNoDevice,
// ErrUnsupportedDevice or ErrNoCuBLASLt when the machine cannot run it.
func New(opts Options) (*Backend, error) {
	api := opts.Driver
	if api == nil {
		var err error
		if api, err = driver.Probe(); err != nil {
			return nil, err
		}
	} else if _, _, err := driver.Initialize(api); err != nil {
		return nil, err
	}
	blas := opts.BLAS
	if blas == nil {
		var err error
		if blas, _, err = blaslt.Load(); err != nil {
			return nil, err
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if bt := opts.BlockThreads; bt != 0 && (bt%32 != 0 || bt > 1024 || bt < 0) {
		return nil, fmt.Errorf("cuda: BlockThreads %d is not a multiple of 32 in [32, 1024]", bt)
	}
	d, err := openDevice(api, blas, opts.Device, opts.MemoryBudget, log)
	if err != nil {
		return nil, err
	}
	if opts.BlockThreads != 0 {
		d.block = opts.BlockThreads
	}
	b := &Backend{d: d, dt: weights.BF16, esize: 2, log: log, synth: opts.SyntheticWeights}
	if opts.Precision == F32 {
		b.dt, b.esize = weights.F32, 4
	}
	mode := attnAuto
	switch opts.Attention {
	case "", "auto":
	case "gemm":
		mode = attnGemm
	case "generic":
		mode = attnGeneric
	default:
		d.Close()
		return nil, fmt.Errorf("cuda: unknown attention implementation %q (want auto, generic or gemm)", opts.Attention)
	}
	if err := b.k.resolve(d, b.dt); err != nil {
		d.Close()
		return nil, err
	}
	b.setupAttention(mode)
	if err := b.disableFamilies(opts); err != nil {
		b.d.Close()
		return nil, err
	}
	if err := b.startSelfTest(opts); err != nil {
		b.d.Close()
		return nil, err
	}
	if err := b.Err(); err != nil { // the device could not be reopened after a fault
		b.d.Close()
		return nil, err
	}
	p := b.d.Props()
	log.Debug("cuda: device ready", "name", p.Name, "cc", p.CC(), "sms", p.SMs, "mem", p.TotalMem, "precision", opts.Precision.String(), "flash", b.flash, "tc", len(b.tc), "disabled", fmt.Sprint(b.Disabled()))
	return b, nil
}

// Close frees every device allocation of the backend (tensors included) and
// releases the device.
func (b *Backend) Close() error { return b.d.Close() }

// Device returns the backend's device.
func (b *Backend) Device() *Device { return b.d }

// Name returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Precision returns the device dtype of tensors.
func (b *Backend) Precision() Precision {
	if b.dt == weights.F32 {
		return F32
	}
	return BF16
}

// Err returns the first error recorded since the last ResetErr.
func (b *Backend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// ResetErr clears the sticky error.
func (b *Backend) ResetErr() {
	b.mu.Lock()
	b.err = nil
	b.mu.Unlock()
}

// SetContext makes every later op check ctx before it launches work: once
// ctx is done, ops record ctx.Err() as the sticky error and return
// placeholders, so a cancelled request stops between launches. nil clears it.
func (b *Backend) SetContext(ctx context.Context) {
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
}

func (b *Backend) setErr(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// failed reports a recorded error, recording the context's first.
func (b *Backend) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil && b.ctx != nil {
		b.err = b.ctx.Err()
	}
	return b.err != nil
}

// PeakBytes returns the high-water mark of device memory held by the
// backend since creation or the last ResetPeak.
func (b *Backend) PeakBytes() uint64 {
	var v uint64
	b.d.Do(func() error { v = b.d.mem.peak; return nil })
	return v
}

// CurrentBytes returns the device memory the backend holds now.
func (b *Backend) CurrentBytes() uint64 {
	var v uint64
	b.d.Do(func() error { v = b.d.mem.cur; return nil })
	return v
}

// ResetPeak sets the high-water mark to the current usage.
func (b *Backend) ResetPeak() {
	b.d.Do(func() error { b.d.mem.peak = b.d.mem.cur; return nil })
}

// MemInfo returns the device's free and total memory.
func (b *Backend) MemInfo() (free, total uint64, err error) { return b.d.MemInfo() }

// Sync waits until all queued work has finished and reports an asynchronous
// device error, if any (also recorded as the sticky error).
func (b *Backend) Sync() error {
	err := b.d.Do(b.d.sync)
	if err != nil {
		b.setErr(err)
	}
	return err
}

// Tensor is a device tensor: an allocation of the backend's dtype, or a view
// (Reshape) of one.
type Tensor struct {
	ptr         driver.DevicePtr
	shape       []int
	dt          weights.DType
	base        *Tensor // the owner of a view's storage
	freed       bool
	placeholder bool
}

// Shape returns the dimensions (do not modify).
func (t *Tensor) Shape() []int { return t.shape }

// DType returns the device dtype (BF16 or F32; a quantized weight's ggml
// block type).
func (t *Tensor) DType() weights.DType { return t.dt }

func (t *Tensor) numel() int { return numel(t.shape) }

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func (b *Backend) placeholder(shape ...int) *Tensor {
	s := make([]int, len(shape))
	for i, d := range shape {
		s[i] = max(d, 0)
	}
	return &Tensor{shape: s, dt: b.dt, placeholder: true}
}

func shapeOf(t compute.Tensor) []int {
	if t == nil {
		return nil
	}
	if ct, ok := t.(*Tensor); ok && ct != nil {
		return ct.shape
	}
	return t.Shape()
}

func (b *Backend) shapeErr(op, reason string, ts ...compute.Tensor) {
	b.setErr(&compute.ShapeError{Op: op, Shapes: compute.Shapes(ts...), Reason: reason})
}

// get checks that t is a live tensor of this backend; it records an error and
// returns nil otherwise.
func (b *Backend) get(op string, t compute.Tensor) *Tensor {
	ct, err := compute.Handle("cuda", op, t, (*Tensor).state)
	if err != nil {
		b.setErr(err)
		return nil
	}
	return ct
}

// state reports whether t is a placeholder or freed (itself or its base).
func (t *Tensor) state() (placeholder, freed bool) {
	return t.placeholder, t.freed || (t.base != nil && t.base.freed)
}

// operands returns the live tensors behind an op's operands ts, in order
// (nil for an absent optional one), or false with an error recorded: an
// earlier one, an operand get would reject, or else rule, the op's shape
// rule from package compute (nil when it holds).
func (b *Backend) operands(op string, rule error, ts ...compute.Tensor) ([]*Tensor, bool) {
	b.freeTemps() // left by an op that did not reach exec
	if b.failed() {
		return nil, false
	}
	out, err := compute.Operands("cuda", op, rule, (*Tensor).state, ts...)
	if err != nil {
		b.setErr(err)
		return nil, false
	}
	if err := b.expandQuant(op, out); err != nil { // quant.go
		b.freeTemps()
		b.setErr(err)
		return nil, false
	}
	return out, true
}

// maxElems bounds a tensor's element count: kernels index with 32-bit ints.
const maxElems = 1<<31 - 1

// exec allocates an output of shape and runs fn on the device thread to fill
// it. On any error the output is freed, the error recorded and a placeholder
// returned.
func (b *Backend) exec(op string, shape []int, fn func(out *Tensor) error) compute.Tensor {
	if b.failed() {
		return b.placeholder(shape...)
	}
	n := numel(shape)
	if n > maxElems {
		b.setErr(fmt.Errorf("cuda: %s: output %v has %d elements, more than the kernels' 2^31-1", op, shape, n))
		return b.placeholder(shape...)
	}
	out := &Tensor{shape: slices.Clone(shape), dt: b.dt}
	err := b.d.Do(func() error {
		p, err := b.d.alloc(uint64(n * b.esize))
		if err != nil {
			return err
		}
		out.ptr = p
		if err := fn(out); err != nil {
			b.d.free(p)
			return err
		}
		return nil
	})
	b.freeTemps()
	if err != nil {
		b.setErr(fmt.Errorf("cuda: %s: %w", op, err))
		return b.placeholder(shape...)
	}
	return out
}

// Free releases tensors' device memory (stream-ordered: safe while queued
// kernels still use them). Views, placeholders and freed tensors are
// skipped.
func (b *Backend) Free(ts ...compute.Tensor) {
	var ps []driver.DevicePtr
	for _, t := range ts {
		ct, ok := t.(*Tensor)
		if !ok || ct == nil || ct.freed || ct.placeholder || ct.base != nil {
			continue
		}
		ct.freed = true
		ps = append(ps, ct.ptr)
	}
	if len(ps) == 0 {
		return
	}
	err := b.d.Do(func() error {
		var errs []error
		for _, p := range ps {
			errs = append(errs, b.d.free(p))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		b.setErr(fmt.Errorf("cuda: Free: %w", err))
	}
}

// Reshape returns a view with a new shape of the same element count.
func (b *Backend) Reshape(t compute.Tensor, shape ...int) compute.Tensor {
	shape, rule := compute.ReshapeShape(t, shape)
	ts, ok := b.operands("Reshape", rule, t)
	if !ok {
		return b.placeholder(shape...)
	}
	x := ts[0]
	base := x
	if x.base != nil {
		base = x.base
	}
	return &Tensor{ptr: x.ptr, shape: slices.Clone(shape), dt: x.dt, base: base}
}
