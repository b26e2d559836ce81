package fakecuda

import (
	"unsafe"

	"github.com/zimage/zimage/cuda/driver"
)

// Fault is a failure injected into every launch of a named kernel (Inject),
// to test how the backend's self-test and fallbacks react to a kernel that is
// wrong on some GPU.
type Fault int

const (
	// FaultNone removes an injection.
	FaultNone Fault = iota
	// FaultWrong runs the kernel, then overwrites the first 4 bytes it wrote
	// with a finite wrong value (65536 in f32; 0 and 65536 in bf16).
	FaultWrong
	// FaultNaN runs the kernel, then overwrites the first 4 bytes it wrote
	// with NaN (0xff bytes: NaN in f32 and in bf16).
	FaultNaN
	// FaultIllegalAddress does not run the kernel; the launch returns
	// success, as on a GPU, and the context becomes unusable: every later
	// launch, copy, allocation and synchronisation fails with
	// CUDA_ERROR_ILLEGAL_ADDRESS until the primary context is released to
	// zero references (destroyed) or reset (cuDevicePrimaryCtxReset_v2), and
	// retained again.
	FaultIllegalAddress
	// FaultLaunch makes cuLaunchKernel fail with
	// CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (not sticky).
	FaultLaunch
)

func (f Fault) String() string {
	switch f {
	case FaultWrong:
		return "wrong result"
	case FaultNaN:
		return "NaN"
	case FaultIllegalAddress:
		return "illegal address"
	case FaultLaunch:
		return "launch failure"
	}
	return "none"
}

// Inject makes every later launch of kernel fail as fault says (FaultNone
// removes it). It may be called at any time.
func (f *Fake) Inject(kernel string, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = map[string]Fault{}
	}
	if fault == FaultNone {
		delete(f.faults, kernel)
		return
	}
	f.faults[kernel] = fault
}

// Launched returns how many times kernel has been launched (executed or
// not) since the fake was made.
func (f *Fake) Launched(kernel string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.launched[kernel]
}

// TotalLaunches returns the number of kernel launches since the fake was
// made.
func (f *Fake) TotalLaunches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.launched {
		n += c
	}
	return n
}

// Contexts returns how many times a primary context was created (retained
// from zero references).
func (f *Fake) Contexts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctxCreated
}

// stuck returns the sticky error of a faulted context (Success if none).
// Call with f.mu held.
func (f *Fake) stuck() driver.Result { return f.sticky }

// wrapSticky makes the calls that touch the device fail while the context
// is faulted, like a real driver after CUDA_ERROR_ILLEGAL_ADDRESS, and
// clears the fault when the primary context is destroyed.
func (f *Fake) wrapSticky(api *driver.API) {
	check := func() driver.Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.stuck()
	}
	sync, ev := api.StreamSynchronize, api.EventSynchronize
	api.StreamSynchronize = func(s driver.Stream) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return sync(s)
	}
	api.EventSynchronize = func(e driver.Event) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return ev(e)
	}
	cs := api.CtxSynchronize
	api.CtxSynchronize = func() driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return cs()
	}
	htod, dtoh, dtod := api.MemcpyHtoDAsync, api.MemcpyDtoHAsync, api.MemcpyDtoDAsync
	api.MemcpyHtoDAsync = func(dst driver.DevicePtr, src unsafe.Pointer, n uint64, s driver.Stream) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return htod(dst, src, n, s)
	}
	api.MemcpyDtoHAsync = func(dst unsafe.Pointer, src driver.DevicePtr, n uint64, s driver.Stream) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return dtoh(dst, src, n, s)
	}
	api.MemcpyDtoDAsync = func(dst, src driver.DevicePtr, n uint64, s driver.Stream) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return dtod(dst, src, n, s)
	}
	aa, a := api.MemAllocAsync, api.MemAlloc
	api.MemAllocAsync = func(p *driver.DevicePtr, n uint64, s driver.Stream) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return aa(p, n, s)
	}
	api.MemAlloc = func(p *driver.DevicePtr, n uint64) driver.Result {
		if r := check(); r != driver.Success {
			return r
		}
		return a(p, n)
	}
	retain, release, reset := api.DevicePrimaryCtxRetain, api.DevicePrimaryCtxRelease, api.DevicePrimaryCtxReset
	api.DevicePrimaryCtxRetain = func(c *driver.Context, d driver.Device) driver.Result {
		f.mu.Lock()
		if f.ctxRefs == 0 || f.ctxReset {
			f.ctxCreated++
			f.ctxReset = false
		}
		f.mu.Unlock()
		return retain(c, d)
	}
	api.DevicePrimaryCtxReset = func(d driver.Device) driver.Result {
		r := reset(d)
		f.mu.Lock()
		f.sticky = driver.Success // the faulted context is gone, retained or not
		f.ctxReset = true
		f.mu.Unlock()
		return r
	}
	api.DevicePrimaryCtxRelease = func(d driver.Device) driver.Result {
		r := release(d)
		f.mu.Lock()
		if f.ctxRefs == 0 {
			f.sticky = driver.Success // the faulted context is gone
		}
		f.mu.Unlock()
		return r
	}
}

// injectBefore applies a launch's injected fault before it runs: it returns
// a result to end the launch with (ok false), or, for faults applied after
// the kernel ran, a snapshot of the memory its pointer arguments reach.
// Call with f.mu held.
func (f *Fake) injectBefore(name, sig string) (fault Fault, snap []snapshot, r driver.Result, ok bool) {
	f.launched[name]++
	if f.sticky != driver.Success {
		return FaultNone, nil, f.sticky, false
	}
	fault = f.faults[name]
	switch fault {
	case FaultLaunch:
		return fault, nil, driver.ErrLaunchOutOfResources, false
	case FaultIllegalAddress:
		f.sticky = driver.ErrIllegalAddress
		return fault, nil, driver.Success, false
	case FaultWrong, FaultNaN:
		for i, k := range sig {
			if k != 'p' || f.argsBuf[i] == 0 {
				continue
			}
			buf, base := f.allocOf(f.argsBuf[i])
			if buf == nil {
				continue
			}
			snap = append(snap, snapshot{buf: buf, from: int(f.argsBuf[i] - base), old: append([]byte(nil), buf...)})
		}
	}
	return fault, snap, driver.Success, true
}

type snapshot struct {
	buf  []byte
	from int // offset of the argument in buf
	old  []byte
}

// allocOf returns the allocation holding p and its base address.
func (f *Fake) allocOf(p uint64) ([]byte, uint64) {
	for _, a := range f.allocs {
		if p >= uint64(a.base) && p < uint64(a.base)+uint64(len(a.buf)) {
			return a.buf, uint64(a.base)
		}
	}
	return nil, 0
}

// injectAfter corrupts the first 4 bytes (aligned) the kernel changed from
// the start of one of its pointer arguments.
func (f *Fake) injectAfter(fault Fault, snap []snapshot) {
	if fault != FaultWrong && fault != FaultNaN {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range snap {
		for i := s.from; i < len(s.buf); i++ {
			if s.buf[i] == s.old[i] {
				continue
			}
			at := i &^ 3
			if at+4 > len(s.buf) {
				return
			}
			v := [4]byte{0xff, 0xff, 0xff, 0xff}
			if fault == FaultWrong {
				v = [4]byte{0x00, 0x00, 0x80, 0x47} // 65536 (f32); 0, 65536 (bf16)
			}
			copy(s.buf[at:at+4], v[:])
			return
		}
	}
}
