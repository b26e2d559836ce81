package driver

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/zimage/zimage/cuda/internal/bind"
)

// EnvLibrary overrides the path of the driver library.
const EnvLibrary = "ZIMAGE_LIBCUDA"

// DefaultLibrary is the driver library's soname.
const DefaultLibrary = "libcuda.so.1"

// LibraryPath returns the driver library Load opens: $ZIMAGE_LIBCUDA, else
// libcuda.so.1.
func LibraryPath() string {
	if p := os.Getenv(EnvLibrary); p != "" {
		return p
	}
	return DefaultLibrary
}

// Load opens the driver library (LibraryPath) and binds every symbol of API.
// It fails with ErrNoDriver when the library cannot be opened and with
// ErrDriverTooOld (listing every missing symbol) when it lacks entry points.
// Load does not initialise the driver; see Initialize.
func Load() (*API, error) { return LoadFrom(LibraryPath()) }

// LoadFrom is Load on an explicit library path.
func LoadFrom(path string) (*API, error) {
	h, _, err := bind.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDriver, err)
	}
	// The handle is never closed: unloading the driver under live threads is
	// not safe, and the process keeps at most one.
	return BindAPI(path, bind.DlsymLookup(h))
}

// BindAPI builds an API from a symbol lookup (Load's second half, separate
// so the missing-symbol path can be tested without a library).
func BindAPI(library string, lookup bind.Lookup) (*API, error) {
	api := new(API)
	if err := bind.Bind(library, api, lookup); err != nil {
		var me *bind.MissingError
		if errors.As(err, &me) {
			return nil, fmt.Errorf("%w: %v", ErrDriverTooOld, err)
		}
		return nil, err
	}
	api.Launch = SyscallLauncher(api.LaunchKernelPtr)
	return api, nil
}

// Symbols returns the names of every driver symbol API binds.
func Symbols() []string {
	req, opt := bind.Symbols(&API{})
	return append(req, opt...)
}

// SyscallLauncher calls cuLaunchKernel at the given address with
// purego.SyscallN (integer arguments only, which cuLaunchKernel is).
type SyscallLauncher uintptr

// LaunchKernel implements Launcher.
func (l SyscallLauncher) LaunchKernel(f Function, gx, gy, gz, bx, by, bz, smem uint32, s Stream, params unsafe.Pointer) Result {
	r1, _, _ := purego.SyscallN(uintptr(l), uintptr(f), uintptr(gx), uintptr(gy), uintptr(gz),
		uintptr(bx), uintptr(by), uintptr(bz), uintptr(smem), uintptr(s), uintptr(params), 0)
	return Result(int32(uint32(r1)))
}

// Initialize runs the rest of the ladder on a loaded API: the driver version
// must be at least 11.8 (ErrDriverTooOld), cuInit must succeed and at least
// one device must exist (ErrNoDevice). It returns the driver version
// (e.g. 12020) and the device count.
func Initialize(api *API) (version, devices int, err error) {
	var v int32
	if err := api.Check("cuDriverGetVersion", api.DriverGetVersion(&v)); err != nil {
		return 0, 0, err
	}
	if v < MinDriverVersion {
		return int(v), 0, fmt.Errorf("%w: driver supports CUDA %d.%d, need %d.%d or newer",
			ErrDriverTooOld, v/1000, v%1000/10, MinDriverVersion/1000, MinDriverVersion%1000/10)
	}
	if r := api.Init(0); r != Success {
		// *Error matches ErrNoDevice through its Is method for code 100.
		return int(v), 0, api.newError("cuInit", r)
	}
	var n int32
	if err := api.Check("cuDeviceGetCount", api.DeviceGetCount(&n)); err != nil {
		return int(v), 0, err
	}
	if n == 0 {
		return int(v), 0, fmt.Errorf("%w: cuDeviceGetCount reports 0 devices", ErrNoDevice)
	}
	return int(v), int(n), nil
}

// Props are the device properties the backend uses.
type Props struct {
	Ordinal              int
	Name                 string
	Major, Minor         int // compute capability
	SMs                  int
	TotalMem             uint64
	MaxSharedOptin       int // bytes of shared memory per block with opt-in
	MemoryPools          bool
	ReadOnlyHostRegister bool
}

// CC returns the compute capability as major*10+minor (e.g. 90).
func (p Props) CC() int { return p.Major*10 + p.Minor }

// DeviceProps queries device ordinal's properties and checks that it is at
// least compute capability 8.0 (ErrUnsupportedDevice otherwise).
func DeviceProps(api *API, ordinal int) (Device, Props, error) {
	var d Device
	if err := api.Check("cuDeviceGet", api.DeviceGet(&d, int32(ordinal))); err != nil {
		return 0, Props{}, err
	}
	p := Props{Ordinal: ordinal}
	var name [256]byte
	if err := api.Check("cuDeviceGetName", api.DeviceGetName(&name[0], int32(len(name)), d)); err != nil {
		return 0, Props{}, err
	}
	p.Name = GoString(&name[0])
	attr := func(a DeviceAttribute) (int, error) {
		var v int32
		err := api.Check("cuDeviceGetAttribute", api.DeviceGetAttribute(&v, a, d))
		return int(v), err
	}
	var errs []error
	get := func(a DeviceAttribute) int {
		v, err := attr(a)
		errs = append(errs, err)
		return v
	}
	p.Major = get(AttrComputeCapabilityMajor)
	p.Minor = get(AttrComputeCapabilityMinor)
	p.SMs = get(AttrMultiprocessorCount)
	p.MaxSharedOptin = get(AttrMaxSharedMemoryPerBlockOptin)
	p.MemoryPools = get(AttrMemoryPoolsSupported) != 0
	p.ReadOnlyHostRegister = get(AttrReadOnlyHostRegisterSupported) != 0
	errs = append(errs, api.Check("cuDeviceTotalMem_v2", api.DeviceTotalMem(&p.TotalMem, d)))
	if err := errors.Join(errs...); err != nil {
		return 0, Props{}, err
	}
	if p.CC() < MinComputeCapability {
		return d, p, fmt.Errorf("%w: %s is compute capability %d.%d, need 8.0 or newer", ErrUnsupportedDevice, p.Name, p.Major, p.Minor)
	}
	return d, p, nil
}

var (
	probeOnce sync.Once
	probeErr  error
	probeAPI  *API
)

// Probe loads and initialises the driver once per process and caches the
// outcome; it returns the API or the ladder's error.
func Probe() (*API, error) {
	probeOnce.Do(func() {
		api, err := Load()
		if err != nil {
			probeErr = err
			return
		}
		if _, _, err := Initialize(api); err != nil {
			probeErr = err
			return
		}
		probeAPI = api
	})
	return probeAPI, probeErr
}
