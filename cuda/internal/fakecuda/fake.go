// Package fakecuda is a CUDA driver and cuBLASLt stand-in for tests without a
// GPU. It fills the same function tables as the real bindings with Go
// functions: "device" memory is host memory (device pointers are host
// addresses, checked against live allocations on every use), streams and
// events are synchronous, kernel launches are validated against the fatbin's
// signatures and, when the host shim is available, executed on the CPU.
// cuBLASLt matmuls are computed in Go from the descriptors and layouts, so
// the backend's use of them is exercised end to end.
package fakecuda

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"unsafe"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/internal/hostshim"
	"github.com/zimage/zimage/cuda/kernels"
	"github.com/zimage/zimage/weights"
)

// Launch is one recorded kernel launch.
type Launch struct {
	Kernel    string
	Grid      [3]uint32
	Block     [3]uint32
	Smem      uint32
	Args      []uint64 // raw parameter values (low bytes for 32-bit ones)
	Signature string
	Executed  bool
}

// Fake is one fake GPU with its driver table.
type Fake struct {
	API *driver.API

	// Configuration; set before use.
	Version     int32         // cuDriverGetVersion (default 12020)
	InitResult  driver.Result // cuInit result (default success)
	Devices     int32         // device count (default 1)
	CCMajor     int32         // default 9
	CCMinor     int32         // default 0
	TotalMem    uint64        // capacity for allocations (default 1 GiB)
	MemoryPools bool          // advertise stream-ordered allocation (default true)
	Record      bool          // record launches in Launches
	Shim        *hostshim.Lib // executes kernels when non-nil
	// LaunchHook, when set, runs before each launch and may fail it.
	LaunchHook func(l *Launch) driver.Result
	// EmulateFlash runs the tensor-core attention kernels as Go code instead
	// of on the host shim (which runs them through its emulation of the PTX
	// helpers); either way the launch must match FlashContract.
	EmulateFlash bool

	mu        sync.Mutex
	allocs    []alloc // sorted by base
	inUse     uint64
	hostAlloc map[uintptr][]byte
	funcs     []string
	sigs      map[string]string
	Launches  []Launch
	Calls     map[string]int
	ctxRefs   int
	modules   int
	streams   int
	events    int
	lastErr   error
	argsBuf   [32]uint64

	// Fault injection (inject.go).
	faults     map[string]Fault
	launched   map[string]int
	sticky     driver.Result
	ctxCreated int
	ctxReset   bool // the primary context was reset: the next retain makes a new one
}

type alloc struct {
	base uintptr
	buf  []byte
}

// New returns a fake GPU (Hopper, 1 GiB) with its API table filled.
func New() *Fake {
	f := &Fake{Version: 12020, Devices: 1, CCMajor: 9, TotalMem: 1 << 30, MemoryPools: true,
		hostAlloc: map[uintptr][]byte{}, Calls: map[string]int{}, sigs: kernels.Signatures(), launched: map[string]int{}}
	f.API = f.table()
	f.wrapSticky(f.API)
	return f
}

// Err returns the first misuse the fake detected (bad pointers, unknown
// handles), which does not always surface as a CUresult.
func (f *Fake) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func (f *Fake) fail(format string, args ...any) driver.Result {
	if f.lastErr == nil {
		f.lastErr = fmt.Errorf("fakecuda: "+format, args...)
	}
	return driver.ErrInvalidValue
}

// Live returns the number of live device allocations and their bytes.
func (f *Fake) Live() (n int, bytes uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.allocs), f.inUse
}

// Leaks reports resources not released: device and host allocations,
// contexts, modules, streams and events.
func (f *Fake) Leaks() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.allocs) == 0 && len(f.hostAlloc) == 0 && f.ctxRefs == 0 && f.modules == 0 && f.streams == 0 && f.events == 0 {
		return ""
	}
	return fmt.Sprintf("%d device allocations (%d B), %d host allocations, %d contexts, %d modules, %d streams, %d events",
		len(f.allocs), f.inUse, len(f.hostAlloc), f.ctxRefs, f.modules, f.streams, f.events)
}

// find returns the allocation holding [p, p+n).
func (f *Fake) find(p uint64, n uint64) ([]byte, bool) {
	i := sort.Search(len(f.allocs), func(i int) bool { return uint64(f.allocs[i].base) > p }) - 1
	if i < 0 {
		return nil, false
	}
	a := f.allocs[i]
	off := p - uint64(a.base)
	if off+n > uint64(len(a.buf)) {
		return nil, false
	}
	return a.buf[off : off+n], true
}

func (f *Fake) hostFind(p unsafe.Pointer, n uint64) ([]byte, bool) {
	// Host pointers may be Go memory (pageable copies) or fake pinned memory;
	// both are addressable here.
	if p == nil && n > 0 {
		return nil, false
	}
	return unsafe.Slice((*byte)(p), n), true
}

func (f *Fake) devAlloc(n uint64) (driver.DevicePtr, driver.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inUse+n > f.TotalMem {
		return 0, driver.ErrOutOfMemoryCode
	}
	buf := make([]byte, n+256)
	base := uintptr(unsafe.Pointer(&buf[0]))
	pad := (256 - base%256) % 256
	buf = buf[pad : pad+uintptr(n)]
	base += pad
	for i := range buf { // poison: kernels must not read memory they did not write
		buf[i] = 0xff
	}
	i := sort.Search(len(f.allocs), func(i int) bool { return f.allocs[i].base > base })
	f.allocs = append(f.allocs, alloc{})
	copy(f.allocs[i+1:], f.allocs[i:])
	f.allocs[i] = alloc{base: base, buf: buf}
	f.inUse += n
	return driver.DevicePtr(base), driver.Success
}

func (f *Fake) devFree(p driver.DevicePtr) driver.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.allocs {
		if uint64(a.base) == uint64(p) {
			f.inUse -= uint64(len(a.buf))
			f.allocs = append(f.allocs[:i], f.allocs[i+1:]...)
			return driver.Success
		}
	}
	return f.fail("free of %#x, not a live allocation", uint64(p))
}

func (f *Fake) copyDev(dst, src []byte, okD, okS bool, what string, n uint64) driver.Result {
	if !okD || !okS {
		return f.fail("%s of %d bytes outside live allocations", what, n)
	}
	copy(dst, src)
	return driver.Success
}

func (f *Fake) table() *driver.API {
	count := func(name string) { f.mu.Lock(); f.Calls[name]++; f.mu.Unlock() }
	api := &driver.API{}
	api.Init = func(uint32) driver.Result { count("cuInit"); return f.InitResult }
	api.DriverGetVersion = func(v *int32) driver.Result { *v = f.Version; return driver.Success }
	api.GetErrorName = nil // the table's own names are used
	api.GetErrorString = nil
	api.DeviceGetCount = func(n *int32) driver.Result {
		if f.InitResult != driver.Success {
			return driver.ErrNotInitialized
		}
		*n = f.Devices
		return driver.Success
	}
	api.DeviceGet = func(d *driver.Device, ord int32) driver.Result {
		if ord < 0 || ord >= f.Devices {
			return driver.ErrInvalidDevice
		}
		*d = driver.Device(ord)
		return driver.Success
	}
	api.DeviceGetName = func(name *byte, n int32, _ driver.Device) driver.Result {
		s := unsafe.Slice(name, n)
		copy(s, "Fake GPU\x00")
		return driver.Success
	}
	api.DeviceGetAttribute = func(v *int32, a driver.DeviceAttribute, _ driver.Device) driver.Result {
		switch a {
		case driver.AttrComputeCapabilityMajor:
			*v = f.CCMajor
		case driver.AttrComputeCapabilityMinor:
			*v = f.CCMinor
		case driver.AttrMultiprocessorCount:
			*v = 4
		case driver.AttrMaxSharedMemoryPerBlockOptin:
			*v = 227 << 10
		case driver.AttrMemoryPoolsSupported:
			*v = b2i(f.MemoryPools)
		default:
			*v = 0
		}
		return driver.Success
	}
	api.DeviceGetUuid = func(u *[16]byte, d driver.Device) driver.Result {
		copy(u[:], "fake-gpu-uuid-00")
		u[15] = byte('0' + d)
		return driver.Success
	}
	api.DeviceTotalMem = func(n *uint64, _ driver.Device) driver.Result { *n = f.TotalMem; return driver.Success }
	api.DeviceGetDefaultMemPool = func(p *driver.MemPool, _ driver.Device) driver.Result { *p = 1; return driver.Success }
	api.DevicePrimaryCtxRetain = func(c *driver.Context, _ driver.Device) driver.Result {
		f.mu.Lock()
		f.ctxRefs++
		f.mu.Unlock()
		*c = 0xc0
		return driver.Success
	}
	api.DevicePrimaryCtxRelease = func(driver.Device) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.ctxRefs == 0 {
			return f.fail("primary context released more often than retained")
		}
		f.ctxRefs--
		return driver.Success
	}
	// Reset destroys the primary context's state even while it is retained;
	// the retains stay counted (wrapSticky clears a fault).
	api.DevicePrimaryCtxReset = func(driver.Device) driver.Result { count("cuDevicePrimaryCtxReset_v2"); return driver.Success }
	api.CtxSetCurrent = func(driver.Context) driver.Result { return driver.Success }
	api.CtxGetCurrent = func(c *driver.Context) driver.Result { *c = 0xc0; return driver.Success }
	api.CtxSynchronize = func() driver.Result { return driver.Success }

	loadModule := func(m *driver.Module) driver.Result {
		f.mu.Lock()
		f.modules++
		f.mu.Unlock()
		*m = 1
		return driver.Success
	}
	api.ModuleLoadData = func(m *driver.Module, _ unsafe.Pointer) driver.Result { return loadModule(m) }
	api.ModuleLoadDataEx = func(m *driver.Module, _ unsafe.Pointer, _ uint32, _ *driver.JITOption, _ *uintptr) driver.Result {
		return loadModule(m)
	}
	api.ModuleUnload = func(driver.Module) driver.Result {
		f.mu.Lock()
		f.modules--
		f.mu.Unlock()
		return driver.Success
	}
	api.ModuleGetFunction = func(fn *driver.Function, _ driver.Module, name string) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.sigs[name]; !ok {
			return driver.ErrNotFound
		}
		f.funcs = append(f.funcs, name)
		*fn = driver.Function(len(f.funcs)) // 1-based index
		return driver.Success
	}
	api.FuncSetAttribute = func(driver.Function, driver.FuncAttribute, int32) driver.Result { return driver.Success }
	api.FuncGetAttribute = func(v *int32, _ driver.FuncAttribute, _ driver.Function) driver.Result { *v = 0; return driver.Success }
	api.Launch = launcher{f}

	api.MemAlloc = func(p *driver.DevicePtr, n uint64) driver.Result {
		var r driver.Result
		*p, r = f.devAlloc(n)
		return r
	}
	api.MemAllocAsync = func(p *driver.DevicePtr, n uint64, _ driver.Stream) driver.Result {
		var r driver.Result
		*p, r = f.devAlloc(n)
		return r
	}
	api.MemFree = func(p driver.DevicePtr) driver.Result { return f.devFree(p) }
	api.MemFreeAsync = func(p driver.DevicePtr, _ driver.Stream) driver.Result { return f.devFree(p) }
	api.MemPoolSetAttribute = func(driver.MemPool, driver.MemPoolAttribute, unsafe.Pointer) driver.Result { return driver.Success }
	api.MemPoolTrimTo = func(driver.MemPool, uint64) driver.Result { return driver.Success }
	api.MemGetInfo = func(free, total *uint64) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		*free, *total = f.TotalMem-f.inUse, f.TotalMem
		return driver.Success
	}
	api.MemHostAlloc = func(pp *unsafe.Pointer, n uint64, _ uint32) driver.Result {
		buf := make([]byte, n)
		f.mu.Lock()
		f.hostAlloc[uintptr(unsafe.Pointer(&buf[0]))] = buf
		f.mu.Unlock()
		*pp = unsafe.Pointer(&buf[0])
		return driver.Success
	}
	api.MemFreeHost = func(p unsafe.Pointer) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.hostAlloc[uintptr(p)]; !ok {
			return f.fail("cuMemFreeHost of unknown pointer")
		}
		delete(f.hostAlloc, uintptr(p))
		return driver.Success
	}
	api.MemHostRegister = func(unsafe.Pointer, uint64, uint32) driver.Result { return driver.Success }
	api.MemHostUnregister = func(unsafe.Pointer) driver.Result { return driver.Success }
	htod := func(dst driver.DevicePtr, src unsafe.Pointer, n uint64) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, okD := f.find(uint64(dst), n)
		s, okS := f.hostFind(src, n)
		return f.copyDev(d, s, okD, okS, "HtoD", n)
	}
	dtoh := func(dst unsafe.Pointer, src driver.DevicePtr, n uint64) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, okD := f.hostFind(dst, n)
		s, okS := f.find(uint64(src), n)
		return f.copyDev(d, s, okD, okS, "DtoH", n)
	}
	dtod := func(dst, src driver.DevicePtr, n uint64) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, okD := f.find(uint64(dst), n)
		s, okS := f.find(uint64(src), n)
		return f.copyDev(d, s, okD, okS, "DtoD", n)
	}
	api.MemcpyHtoD = htod
	api.MemcpyDtoH = dtoh
	api.MemcpyDtoD = dtod
	api.MemcpyHtoDAsync = func(dst driver.DevicePtr, src unsafe.Pointer, n uint64, _ driver.Stream) driver.Result {
		return htod(dst, src, n)
	}
	api.MemcpyDtoHAsync = func(dst unsafe.Pointer, src driver.DevicePtr, n uint64, _ driver.Stream) driver.Result {
		return dtoh(dst, src, n)
	}
	api.MemcpyDtoDAsync = func(dst, src driver.DevicePtr, n uint64, _ driver.Stream) driver.Result { return dtod(dst, src, n) }
	api.MemsetD8Async = func(dst driver.DevicePtr, v uint8, n uint64, _ driver.Stream) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, ok := f.find(uint64(dst), n)
		if !ok {
			return f.fail("memset of %d bytes outside live allocations", n)
		}
		for i := range d {
			d[i] = v
		}
		return driver.Success
	}
	api.MemsetD32Async = func(dst driver.DevicePtr, v uint32, n uint64, _ driver.Stream) driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, ok := f.find(uint64(dst), 4*n)
		if !ok {
			return f.fail("memset of %d words outside live allocations", n)
		}
		for i := uint64(0); i < n; i++ {
			*(*uint32)(unsafe.Pointer(&d[4*i])) = v
		}
		return driver.Success
	}
	api.StreamCreate = func(s *driver.Stream, _ uint32) driver.Result {
		f.mu.Lock()
		f.streams++
		f.mu.Unlock()
		*s = 0x5
		return driver.Success
	}
	api.StreamDestroy = func(driver.Stream) driver.Result {
		f.mu.Lock()
		f.streams--
		f.mu.Unlock()
		return driver.Success
	}
	api.StreamSynchronize = func(driver.Stream) driver.Result { return driver.Success }
	api.StreamWaitEvent = func(driver.Stream, driver.Event, uint32) driver.Result { return driver.Success }
	api.EventCreate = func(e *driver.Event, _ uint32) driver.Result {
		f.mu.Lock()
		f.events++
		*e = driver.Event(0xe0 + f.events)
		f.mu.Unlock()
		return driver.Success
	}
	api.EventDestroy = func(driver.Event) driver.Result {
		f.mu.Lock()
		f.events--
		f.mu.Unlock()
		return driver.Success
	}
	api.EventRecord = func(driver.Event, driver.Stream) driver.Result { return driver.Success }
	api.EventSynchronize = func(driver.Event) driver.Result { return driver.Success }
	api.EventQuery = func(driver.Event) driver.Result { return driver.Success }
	api.EventElapsedTime = func(ms *float32, _, _ driver.Event) driver.Result { *ms = 0.5; return driver.Success }
	return api
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

type launcher struct{ f *Fake }

// LaunchKernel validates the parameter block against the kernel's signature
// (every pointer argument must be null or inside a live allocation), records
// the launch and runs it on the host shim when there is one.
func (l launcher) LaunchKernel(fn driver.Function, gx, gy, gz, bx, by, bz, smem uint32, _ driver.Stream, params unsafe.Pointer) driver.Result {
	f := l.f
	f.mu.Lock()
	if fn < 1 || int(fn) > len(f.funcs) {
		f.mu.Unlock()
		return f.fail("launch of unknown function %d", fn)
	}
	name := f.funcs[fn-1]
	sig := f.sigs[name]
	ptrs := unsafe.Slice((*unsafe.Pointer)(params), len(sig))
	for i, k := range sig {
		switch k {
		case 'p':
			v := *(*uint64)(ptrs[i])
			f.argsBuf[i] = v
			if v != 0 {
				if _, ok := f.find(v, 1); !ok {
					f.mu.Unlock()
					return f.fail("%s: argument %d (%#x) is not inside a live device allocation", name, i, v)
				}
			}
		default:
			f.argsBuf[i] = uint64(*(*uint32)(ptrs[i]))
		}
	}
	if bx*by*bz == 0 || bx*by*bz > 1024 || gx == 0 || gy == 0 || gz == 0 {
		f.mu.Unlock()
		return f.fail("%s: bad launch configuration grid (%d,%d,%d) block (%d,%d,%d)", name, gx, gy, gz, bx, by, bz)
	}
	// The tensor-core attention kernels index their tiles by the launch
	// shape: any other shape is a bug, whichever way they run.
	d, tc := flashHeadSize[name]
	if tc {
		lq, heads := int(int32(f.argsBuf[4])), int(int32(f.argsBuf[6]))
		if g, b, sm := FlashContract(d, lq, heads); [3]uint32{gx, gy, gz} != g || [3]uint32{bx, by, bz} != b || smem != sm {
			f.mu.Unlock()
			return f.fail("%s: launch grid (%d,%d,%d) block (%d,%d,%d) smem %d; want %v %v %d for lq %d heads %d",
				name, gx, gy, gz, bx, by, bz, smem, g, b, sm, lq, heads)
		}
	}
	fault, snap, r, run := f.injectBefore(name, sig)
	if !run {
		f.mu.Unlock()
		return r
	}
	defer f.injectAfter(fault, snap)
	record := f.Record || f.LaunchHook != nil || (f.EmulateFlash && tc)
	var rec *Launch
	if record {
		f.Launches = append(f.Launches, Launch{Kernel: name, Grid: [3]uint32{gx, gy, gz}, Block: [3]uint32{bx, by, bz},
			Smem: smem, Args: append([]uint64(nil), f.argsBuf[:len(sig)]...), Signature: sig})
		rec = &f.Launches[len(f.Launches)-1]
	}
	hook, shim := f.LaunchHook, f.Shim
	f.mu.Unlock()
	if hook != nil {
		if r := hook(rec); r != driver.Success {
			return r
		}
	}
	if f.EmulateFlash && tc {
		r := f.emulateFlash(rec)
		if r == driver.Success {
			f.mu.Lock()
			rec.Executed = true
			f.mu.Unlock()
		}
		return r
	}
	if shim == nil {
		return driver.Success
	}
	thunk := shim.Thunk(name)
	if thunk == 0 {
		return driver.ErrNotSupported
	}
	if shim.Launch(thunk, gx, gy, gz, bx, by, bz, smem, params) != 0 {
		return driver.ErrLaunchFailed
	}
	if rec != nil {
		f.mu.Lock()
		rec.Executed = true
		f.mu.Unlock()
	}
	return driver.Success
}

// F32 reads n float32 values at device address p (tests).
func (f *Fake) F32(p driver.DevicePtr, n int) []float32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.find(uint64(p), uint64(4*n))
	if !ok {
		return nil
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(*(*uint32)(unsafe.Pointer(&b[4*i])))
	}
	return out
}

// flashHeadSize maps the tensor-core attention kernels to their head size.
var flashHeadSize = map[string]int{
	"zk_tc_flash_attn_bf16_d128": 128,
	"zk_tc_flash_attn_bf16_d256": 256,
	"zk_tc_flash_attn_bf16_d512": 512,
}

// FlashContract returns the launch shape the tensor-core attention kernel
// for head size d requires for lq query rows and heads heads: grid, block
// and dynamic shared memory. d=128: 64 rows and 4 warps per block, Q/K/V
// tiles of 64×128 bf16. d=256, 512 (split-d): 32 rows per block, one warp
// per 128-dim slice and row group of 16, K/V tiles of 32×d bf16 plus the
// warps' float32 partial scores.
func FlashContract(d, lq, heads int) (grid, block [3]uint32, smem uint32) {
	if d == 128 {
		return [3]uint32{uint32((lq + 63) / 64), uint32(heads), 1}, [3]uint32{128, 1, 1}, 3 * 64 * 128 * 2
	}
	sl := d / 128
	return [3]uint32{uint32((lq + 31) / 32), uint32(heads), 1}, [3]uint32{uint32(64 * sl), 1, 1},
		uint32(2*32*d*2 + sl*2*16*32*4)
}

// emulateFlash computes a tensor-core attention kernel (zk_tc_flash_attn_
// bf16_d*) in Go from its launch arguments (q, k, v, o, lq, lk, heads,
// kvHeads, scale, causal): an independent reference for the kernel's
// contract (bf16 rounding of P and of the output) that does not share the
// kernel's source. It says nothing about the PTX itself.
func (f *Fake) emulateFlash(l *Launch) driver.Result {
	a := l.Args
	lq, lk, heads, kvh := int(int32(a[4])), int(int32(a[5])), int(int32(a[6])), int(int32(a[7]))
	scale := math.Float32frombits(uint32(a[8]))
	causal := int32(a[9]) != 0
	d := flashHeadSize[l.Kernel] // launch shape checked by LaunchKernel
	f.mu.Lock()
	defer f.mu.Unlock()
	q, okq := f.find(a[0], uint64(2*lq*heads*d))
	k, okk := f.find(a[1], uint64(2*lk*kvh*d))
	v, okv := f.find(a[2], uint64(2*lk*kvh*d))
	o, oko := f.find(a[3], uint64(2*lq*heads*d))
	if !okq || !okk || !okv || !oko {
		f.fail("flash: operands outside live allocations")
		return driver.ErrInvalidValue
	}
	bf := func(m []byte, i int) float64 {
		return float64(weights.BF16ToF32(uint16(m[2*i]) | uint16(m[2*i+1])<<8))
	}
	s := make([]float64, lk)
	for h := 0; h < heads; h++ {
		g := h / (heads / kvh)
		for i := 0; i < lq; i++ {
			mx := math.Inf(-1)
			for j := 0; j < lk; j++ {
				s[j] = math.Inf(-1)
				if causal && j > i {
					continue
				}
				var dot float64
				for c := 0; c < d; c++ {
					dot += bf(q, (i*heads+h)*d+c) * bf(k, (j*kvh+g)*d+c)
				}
				s[j] = dot * float64(scale)
				mx = math.Max(mx, s[j])
			}
			var sum float64
			for j := range s {
				p := math.Exp(s[j] - mx)
				sum += p
				s[j] = float64(weights.BF16ToF32(weights.F32ToBF16(float32(p)))) // P is bf16 in the kernel
			}
			for c := 0; c < d; c++ {
				var acc float64
				for j := 0; j < lk; j++ {
					acc += s[j] * bf(v, (j*kvh+g)*d+c)
				}
				r := weights.F32ToBF16(float32(acc / sum))
				idx := 2 * ((i*heads+h)*d + c)
				o[idx], o[idx+1] = byte(r), byte(r>>8)
			}
		}
	}
	return driver.Success
}
