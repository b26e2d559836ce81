package driver

import (
	"errors"
	"fmt"
	"unsafe"
)

// Sentinel errors of the initialisation ladder, matched with errors.Is.
var (
	// ErrNoDriver: libcuda.so.1 could not be loaded (no NVIDIA driver).
	ErrNoDriver = errors.New("cuda: no CUDA driver")
	// ErrDriverTooOld: the driver lacks required symbols or is older than 11.8.
	ErrDriverTooOld = errors.New("cuda: CUDA driver too old")
	// ErrNoDevice: the driver loaded but reports no usable GPU.
	ErrNoDevice = errors.New("cuda: no CUDA device")
	// ErrUnsupportedDevice: the GPU is older than compute capability 8.0.
	ErrUnsupportedDevice = errors.New("cuda: unsupported GPU")
	// ErrOutOfMemory: a device allocation failed for lack of memory.
	ErrOutOfMemory = errors.New("cuda: out of device memory")
)

// Error is a failed driver call.
type Error struct {
	Func    string // C function, e.g. "cuMemAlloc_v2"
	Code    Result
	Name    string // e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Message string // the driver's description
	Log     string // JIT error log for module loads, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("cuda: %s: %s (%d)", e.Func, e.Name, int32(e.Code))
	if e.Message != "" {
		s += ": " + e.Message
	}
	if hint := hints[e.Code]; hint != "" {
		s += " (" + hint + ")"
	}
	if e.Log != "" {
		s += "\n" + e.Log
	}
	return s
}

// Is makes errors.Is(err, ErrOutOfMemory) and errors.Is(err, ErrNoDevice)
// work on driver errors.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrOutOfMemory:
		return e.Code == ErrOutOfMemoryCode
	case ErrNoDevice:
		return e.Code == ErrNoDeviceCode || e.Code == ErrInvalidDevice
	}
	return false
}

var hints = map[Result]string{
	ErrNoBinaryForGPU:        "the embedded kernels have no cubin or PTX this GPU can run",
	ErrInvalidPTX:            "the driver failed to JIT-compile the embedded PTX",
	ErrUnsupportedPTXVersion: "the driver is too old for the embedded PTX 7.8; need CUDA 11.8 (R520) or newer",
	ErrNoDeviceCode:          "no CUDA-capable GPU is visible; check the driver and CUDA_VISIBLE_DEVICES",
}

// Check returns nil for CUDA_SUCCESS and an *Error naming fn otherwise.
func (a *API) Check(fn string, r Result) error {
	if r == Success {
		return nil
	}
	return a.newError(fn, r)
}

func (a *API) newError(fn string, r Result) *Error {
	e := &Error{Func: fn, Code: r}
	if a != nil && a.GetErrorName != nil {
		var p *byte
		if a.GetErrorName(r, &p) == Success {
			e.Name = GoString(p)
		}
		if a.GetErrorString != nil && a.GetErrorString(r, &p) == Success {
			e.Message = GoString(p)
		}
	}
	if e.Name == "" {
		e.Name = resultNames[r]
		if e.Name == "" {
			e.Name = "CUDA_ERROR"
		}
	}
	return e
}

// GoString copies a NUL-terminated C string (nil → "").
func GoString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
