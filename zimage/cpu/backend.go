// Package cpu is the pure-Go compute.Backend: float32 activations, weights
// used in their storage dtype straight from the checkpoint mapping, every op
// split over all cores.
//
// Matrix products go to package gemm (weights widened panel by panel while
// packing, never as a whole matrix). Attention is fused FlashAttention-style
// (online softmax over key blocks, no Lq×Lk matrix); on AVX-512 its tile
// products use an in-place register kernel of this package. The softmax
// exponential, SiLU/SwiGLU and GroupNorm have AVX-512 and AVX2 assembly
// paths chosen at start-up, with portable Go for everything else (build tag
// purego forces it).
//
// Tensor memory: activations are Go slices. Free returns an activation's
// buffer to a bounded per-backend free list (reused by later ops of the same
// size, which avoids re-zeroing and GC churn in the repeated block shapes of
// the networks); TrimToCap cuts it back to its cap between requests, Trim
// empties it. A freed handle, and every view of it,
// reports an error when used again instead of reading recycled memory.
//
// Cancellation: SetContext gives the backend a request's context
// (compute.Cancellable). Once it is done, the long ops stop part-way —
// the GEMM between tasks, Attention between query blocks, Conv2D between
// row tiles, each an atomic load per unit of work (tens of milliseconds at
// most at 1024²) — and every op records ctx.Err() as the sticky error.
package cpu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Option configures a Backend.
type Option func(*Backend)

// WithThreads sets the number of goroutines an op may use (0 = GOMAXPROCS).
// A positive n also sets the GEMM's thread count (gemm.SetThreads), which is
// process-wide: the last backend created with this option decides it.
func WithThreads(n int) Option {
	return func(b *Backend) {
		b.threads = n
		if n > 0 {
			gemm.SetThreads(n)
		}
	}
}

// WithPoolBytes bounds the bytes of freed activation buffers kept for reuse
// between requests (default 1 GiB; 0 disables reuse). Within a request the
// bound grows to the request's working set (bufpool.go).
func WithPoolBytes(n int64) Option {
	return func(b *Backend) { b.poolCap = n }
}

// cacheLimit is the largest weight (in float32 bytes) whose float32
// expansion is kept on its handle: norm gains, biases, pad tokens. Bigger
// weights used as float32 (conv kernels, embedding rows) are converted on
// use.
var cacheLimit = 4 << 20 // a variable so tests can take the uncached paths

// Backend is the CPU implementation of compute.Backend. Ops may be called
// from one goroutine at a time; Err/ResetErr are safe from any goroutine.
type Backend struct {
	threads int
	poolCap int64
	bf16    bool // WithBF16 (precision.go)

	mu    sync.Mutex
	err   error
	watch *watch // SetContext's registration (nil: none)

	bufMu     sync.Mutex
	bufs      map[int][]pooledBuf // by capacity (bufpool.go)
	poolBytes int64
	poolSeq   uint64
	// The request's working set (bufpool.go): bytes handed out by alloc
	// and not released, that count when the request began (tensors of
	// earlier requests never freed stay out of it), and the most live
	// bytes since then.
	live, liveBase, peakLive int64
	reserve                  []float32 // pre-faulted memory not handed out yet (reserve.go)
	eager                    bool      // SetEagerConvWeights (reserve.go)

	packs packCache // pre-packed bf16 weights (prepack.go)
}

var _ compute.Backend = (*Backend)(nil)

// New returns a CPU backend.
func New(opts ...Option) *Backend {
	b := &Backend{poolCap: 1 << 30, packs: packCache{budget: -1}}
	for _, o := range opts {
		o(b)
	}
	if b.packs.budget < 0 {
		b.packs.budget = defaultPackBudget()
	}
	if b.threads <= 0 {
		b.threads = runtime.GOMAXPROCS(0)
	}
	return b
}

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Threads returns the number of goroutines ops use.
func (b *Backend) Threads() int { return b.threads }

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

// failed reports a recorded error, recording the context's first when it
// is done. It asks the context itself too: the flag is set by a callback
// that runs on its own goroutine after the cancel, so an op started right
// after it (a GEMM that saw the context directly, then ResetErr) could
// otherwise run on.
func (b *Backend) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watch; b.err == nil && w != nil && w.ctx != nil {
		if err := w.ctx.Err(); err != nil {
			w.stop.Store(true)
			b.err = err
		}
	}
	return b.err != nil
}

// setErr records err if no error is recorded yet.
func (b *Backend) setErr(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// Trim drops the free list of activation buffers, the reserve and the
// GEMM scratch free list (process-wide).
func (b *Backend) Trim() {
	gemm.TrimScratch()
	b.bufMu.Lock()
	b.bufs = nil
	b.poolBytes = 0
	b.liveBase, b.peakLive = b.live, 0
	b.bufMu.Unlock()
	b.endReserve()
}

// Tensor is a CPU tensor: a float32 activation, a view of one, or a
// checkpoint weight in its storage dtype.
type Tensor struct {
	shape []int
	data  []float32       // activations and views; nil for weights and placeholders
	base  *Tensor         // the tensor a view shares storage with
	w     *weights.Tensor // weights only
	f32   []float32       // cached float32 expansion of a small weight
	freed bool
	// placeholder marks a result returned after an error: it has a shape but
	// no storage.
	placeholder bool

	// pk is a weight's bf16 pre-packed form; pkUses counts its products in
	// request pkEpoch, pkSeen says it had products in an earlier request
	// (prepack.go, under Backend.packs.mu).
	pk      *weightPack
	pkUses  int
	pkEpoch uint64
	pkSeen  bool
}

// Shape returns the tensor's dimensions (do not modify).
func (t *Tensor) Shape() []int { return t.shape }

// DType is F32 for activations and the storage dtype for weights.
func (t *Tensor) DType() weights.DType {
	if t.w != nil {
		return t.w.DType
	}
	return weights.F32
}

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
	return &Tensor{shape: s, placeholder: true}
}

func (b *Backend) newTensor(shape ...int) *Tensor {
	s := append([]int(nil), shape...)
	return &Tensor{shape: s, data: b.alloc(numel(s))}
}

// get checks that t is a live CPU tensor. It records an error and returns
// nil otherwise.
func (b *Backend) get(op string, t compute.Tensor) *Tensor {
	ct, err := compute.Handle("cpu", op, t, (*Tensor).state)
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
	if b.failed() {
		return nil, false
	}
	out, err := compute.Operands("cpu", op, rule, (*Tensor).state, ts...)
	if err != nil {
		b.setErr(err)
		return nil, false
	}
	return out, true
}

// shapeOf returns t's shape for placeholders, or nil.
func shapeOf(t compute.Tensor) []int {
	if t == nil {
		return nil
	}
	if ct, ok := t.(*Tensor); ok && ct != nil {
		return ct.shape
	}
	return t.Shape()
}

// values returns t's elements as float32: the activation storage itself, or
// a weight's float32 view / expansion (cached for small weights). The result
// must not be modified.
func (b *Backend) values(op string, t *Tensor) []float32 {
	if t.w == nil {
		return t.data
	}
	if t.f32 != nil {
		return t.f32
	}
	v, err := decode(t.w, 0, t.numel())
	if err != nil {
		b.setErr(fmt.Errorf("cpu: %s: %w", op, err))
		return nil
	}
	if 4*len(v) <= cacheLimit {
		t.f32 = v
	}
	return v
}

// tempValues is values for a large operand used once: a weight too big for
// the cache is decoded into a pooled buffer that done returns.
func (b *Backend) tempValues(op string, t *Tensor) (v []float32, done func()) {
	if t.w == nil || t.f32 != nil || 4*t.numel() <= cacheLimit {
		return b.values(op, t), func() {}
	}
	buf := b.alloc(t.numel())
	v, err := decodeInto(buf, t.w, 0, t.numel())
	if err != nil {
		b.release(buf)
		b.setErr(fmt.Errorf("cpu: %s: %w", op, err))
		return nil, func() {}
	}
	return v, func() { b.release(buf) }
}

// rowValues returns elements [lo, hi) of t as float32 without expanding the
// rest of a weight.
func (b *Backend) rowValues(op string, t *Tensor, lo, hi int) []float32 {
	if t.w == nil {
		return t.data[lo:hi]
	}
	if t.f32 != nil {
		return t.f32[lo:hi]
	}
	v, err := decode(t.w, lo, hi)
	if err != nil {
		b.setErr(fmt.Errorf("cpu: %s: %w", op, err))
		return nil
	}
	return v
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// decode converts elements [lo, hi) of a weight to float32. An aligned F32
// weight on a little-endian machine is returned as a view of its bytes.
func decode(w *weights.Tensor, lo, hi int) ([]float32, error) {
	return decodeInto(nil, w, lo, hi)
}

// decodeInto is decode writing into out when it has room (and no view is
// possible); it returns the slice holding the values.
func decodeInto(out []float32, w *weights.Tensor, lo, hi int) ([]float32, error) {
	if w.DType.IsQuantized() {
		return decodeQuant(out, w, lo, hi)
	}
	n := hi - lo
	src := w.Data[lo*w.DType.Size() : hi*w.DType.Size()]
	if cap(out) >= n {
		out = out[:n]
	} else {
		out = nil
	}
	switch w.DType {
	case weights.F32:
		if n == 0 {
			return []float32{}, nil
		}
		if littleEndian && uintptr(unsafe.Pointer(&src[0]))%4 == 0 {
			return unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), n), nil
		}
		if out == nil {
			out = make([]float32, n)
		}
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
		return out, nil
	case weights.BF16:
		if out == nil {
			out = make([]float32, n)
		}
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
		return out, nil
	case weights.F16:
		if out == nil {
			out = make([]float32, n)
		}
		for i := range out {
			out[i] = weights.F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
		return out, nil
	case weights.F8E4M3, weights.F8E5M2:
		tab := weights.F8E4M3Table()
		if w.DType == weights.F8E5M2 {
			tab = weights.F8E5M2Table()
		}
		if out == nil {
			out = make([]float32, n)
		}
		for i, v := range src {
			out[i] = tab[v]
		}
		return out, nil
	}
	return nil, fmt.Errorf("weight %q has dtype %v, which the cpu backend cannot compute on", w.Name, w.DType)
}

// Weight wraps a checkpoint tensor without copying its bytes.
func (b *Backend) Weight(w *weights.Tensor) compute.Tensor {
	if w == nil {
		b.setErr(errors.New("cpu: Weight: nil weights.Tensor"))
		return b.placeholder(0)
	}
	shape := append([]int(nil), w.Shape...)
	if b.failed() {
		return b.placeholder(shape...)
	}
	switch {
	case w.DType == weights.F32, w.DType == weights.BF16, w.DType == weights.F16, w.DType == weights.F8E4M3, w.DType == weights.F8E5M2:
	case w.DType.IsQuantized(): // see quant.go
		if err := checkQuantWeight(w, shape); err != nil {
			b.setErr(err)
			return b.placeholder(shape...)
		}
		return &Tensor{shape: shape, w: w}
	default:
		b.setErr(fmt.Errorf("cpu: Weight: tensor %q has dtype %v, want F32, BF16, F16 or F8", w.Name, w.DType))
		return b.placeholder(shape...)
	}
	for _, d := range shape {
		if d < 0 {
			b.setErr(fmt.Errorf("cpu: Weight: tensor %q has negative dimension in shape %v", w.Name, shape))
			return b.placeholder(0)
		}
	}
	if want := numel(shape) * w.DType.Size(); len(w.Data) != want {
		b.setErr(fmt.Errorf("cpu: Weight: tensor %q %v %v has %d bytes, want %d", w.Name, w.DType, shape, len(w.Data), want))
		return b.placeholder(shape...)
	}
	t := &Tensor{shape: shape, w: w}
	b.eagerExpand(t) // reserve.go
	return t
}

// FromHost copies data into a new activation.
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
	t := b.newTensor(shape...)
	copy(t.data, data)
	return t
}

// ToHost copies t to a new float32 slice. After an error (or for a
// placeholder) it returns zeros of t's element count, so callers that index
// the result before checking Err do not panic.
func (b *Backend) ToHost(t compute.Tensor) []float32 {
	if b.failed() {
		return make([]float32, numel(shapeOf(t)))
	}
	ct := b.get("ToHost", t)
	if ct == nil {
		return make([]float32, numel(shapeOf(t)))
	}
	v := b.values("ToHost", ct)
	if v == nil {
		return make([]float32, ct.numel())
	}
	out := make([]float32, len(v))
	copy(out, v)
	return out
}

// Free returns activation buffers to the free list. Views, placeholders and
// already freed tensors are ignored; a freed weight handle drops its cached
// float32 expansion (the mapping belongs to the weights.Set).
func (b *Backend) Free(ts ...compute.Tensor) {
	for _, t := range ts {
		ct, ok := t.(*Tensor)
		if !ok || ct == nil || ct.freed || ct.placeholder || ct.base != nil {
			continue
		}
		ct.freed = true
		if ct.w != nil {
			ct.f32 = nil
			b.dropPack(ct)
			continue
		}
		b.release(ct.data)
		ct.data = nil
	}
}

// Reshape returns a view with a new shape of the same element count.
func (b *Backend) Reshape(t compute.Tensor, shape ...int) compute.Tensor {
	shape, rule := compute.ReshapeShape(t, shape)
	ts, ok := b.operands("Reshape", rule, t)
	if !ok {
		return b.placeholder(shape...)
	}
	x, s := ts[0], shape
	if x.w != nil {
		// A weight view shares the mapping; it is itself a weight handle.
		w := *x.w
		w.Shape = s
		return &Tensor{shape: s, w: &w, f32: x.f32}
	}
	base := x
	if x.base != nil {
		base = x.base
	}
	return &Tensor{shape: s, data: x.data, base: base}
}
