package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/kernels"
)

// Device is one GPU with its primary context current on a dedicated OS
// thread. Every CUDA call goes through Do, which runs on that thread.
type Device struct {
	api   *driver.API
	blas  *blaslt.API
	dev   driver.Device
	ctx   driver.Context
	props driver.Props
	log   *slog.Logger

	work chan func()
	mu   sync.Mutex // one Do at a time
	res  chan error
	quit chan struct{}
	shut bool

	stream driver.Stream
	pool   driver.MemPool // default pool when stream-ordered allocation is used
	async  bool

	mod   driver.Module
	kerns map[string]*kernel
	args  *launcher

	// block is the threads per block of the 1-D kernels (256; a multiple of
	// 32; tests on the host shim use fewer).
	block int

	mem  memTracker
	gemm *blaslt.Gemm
	ws   driver.DevicePtr // cuBLASLt workspace

	host [2]hostBuf // pinned staging buffers
	devs [2]driver.DevicePtr
	evs  [2]driver.Event
}

// gemmWorkspace is the cuBLASLt workspace size (NVIDIA recommends 32 MiB on
// Hopper).
const gemmWorkspace = 32 << 20

// stagingBytes is the size of each of the two pinned staging buffers used for
// uploads and downloads.
const stagingBytes = 64 << 20

// hostBuf is pinned host memory from cuMemHostAlloc (C memory, so it may be
// handed to async copies).
type hostBuf struct {
	p unsafe.Pointer
	b []byte
}

// openDevice initialises ordinal on a new locked OS thread.
func openDevice(api *driver.API, blas *blaslt.API, ordinal int, budget uint64, log *slog.Logger) (*Device, error) {
	d := &Device{api: api, blas: blas, log: log, block: 256, work: make(chan func()), res: make(chan error), quit: make(chan struct{})}
	d.mem.budget = budget
	started := make(chan struct{})
	go d.loop(started)
	<-started
	if err := d.Do(d.init(ordinal)); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// loop is the device goroutine: locked to its thread for its whole life, so
// the context made current in init stays current for every call.
func (d *Device) loop(started chan<- struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	close(started)
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.quit:
			return
		}
	}
}

// Do runs fn on the device thread and returns its error. It is safe for
// concurrent use (calls are serialised). fn must not call Do.
func (d *Device) Do(fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shut {
		return errors.New("cuda: device is closed")
	}
	d.work <- func() { d.res <- fn() }
	return <-d.res
}

func (d *Device) init(ordinal int) func() error {
	return func() error {
		api := d.api
		dev, props, err := driver.DeviceProps(api, ordinal)
		if err != nil {
			return err
		}
		d.dev, d.props = dev, props
		if err := api.Check("cuDevicePrimaryCtxRetain", api.DevicePrimaryCtxRetain(&d.ctx, dev)); err != nil {
			return err
		}
		if err := api.Check("cuCtxSetCurrent", api.CtxSetCurrent(d.ctx)); err != nil {
			return err
		}
		if err := api.Check("cuStreamCreate", api.StreamCreate(&d.stream, driver.StreamNonBlocking)); err != nil {
			return err
		}
		if props.MemoryPools {
			// Stream-ordered allocation from the default pool; keep freed
			// memory in the pool instead of returning it at every sync.
			if err := api.Check("cuDeviceGetDefaultMemPool", api.DeviceGetDefaultMemPool(&d.pool, dev)); err != nil {
				return err
			}
			thr := uint64(math.MaxUint64)
			if err := api.Check("cuMemPoolSetAttribute", api.MemPoolSetAttribute(d.pool, driver.MemPoolAttrReleaseThreshold, unsafe.Pointer(&thr))); err != nil {
				return err
			}
			d.async = true
		}
		if err := d.loadModule(); err != nil {
			return err
		}
		d.args = newLauncher()
		for i := range d.host {
			if err := api.Check("cuMemHostAlloc", api.MemHostAlloc(&d.host[i].p, stagingBytes, driver.MemHostAllocPortable)); err != nil {
				return err
			}
			d.host[i].b = unsafe.Slice((*byte)(d.host[i].p), stagingBytes)
			if err := api.Check("cuEventCreate", api.EventCreate(&d.evs[i], driver.EventDisableTiming)); err != nil {
				return err
			}
			if d.devs[i], err = d.alloc(stagingBytes); err != nil {
				return err
			}
		}
		if d.ws, err = d.alloc(gemmWorkspace); err != nil {
			return err
		}
		if d.gemm, err = blaslt.NewGemm(d.blas, uint64(d.ws), gemmWorkspace); err != nil {
			return err
		}
		return nil
	}
}

// loadModule loads the embedded fatbin with a JIT error log and resolves
// every kernel.
func (d *Device) loadModule() error {
	api := d.api
	img := kernels.Fatbin()
	errLog := make([]byte, 16<<10)
	opts := []driver.JITOption{driver.JITErrorLogBuffer, driver.JITErrorLogBufferSizeBytes}
	var pin runtime.Pinner
	pin.Pin(&errLog[0])
	defer pin.Unpin()
	vals := []uintptr{uintptr(unsafe.Pointer(&errLog[0])), uintptr(len(errLog))}
	r := api.ModuleLoadDataEx(&d.mod, unsafe.Pointer(&img[0]), uint32(len(opts)), &opts[0], &vals[0])
	runtime.KeepAlive(img)
	if err := api.Check("cuModuleLoadDataEx", r); err != nil {
		var e *driver.Error
		if errors.As(err, &e) {
			e.Log = driver.GoString(&errLog[0])
		}
		return err
	}
	d.kerns = map[string]*kernel{}
	for name, sig := range kernels.Signatures() {
		k := &kernel{name: name, sig: sig}
		if err := api.Check("cuModuleGetFunction", api.ModuleGetFunction(&k.fn, d.mod, name)); err != nil {
			return fmt.Errorf("%w (kernel %s)", err, name)
		}
		d.kerns[name] = k
	}
	return nil
}

// kernel returns the named kernel (nil if absent).
func (d *Device) kernel(name string) *kernel { return d.kerns[name] }

// Props returns the device properties.
func (d *Device) Props() driver.Props { return d.props }

// Close waits for the device, frees everything it allocated and releases the
// primary context. It is idempotent.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.shut {
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()
	err := d.Do(func() error {
		api := d.api
		var errs []error
		if d.stream != 0 {
			errs = append(errs, api.Check("cuStreamSynchronize", api.StreamSynchronize(d.stream)))
		}
		if d.gemm != nil {
			d.gemm.Close()
			d.gemm = nil
		}
		errs = append(errs, d.mem.freeAll(d))
		for i := range d.host {
			if d.host[i].p != nil {
				errs = append(errs, api.Check("cuMemFreeHost", api.MemFreeHost(d.host[i].p)))
				d.host[i] = hostBuf{}
			}
			if d.evs[i] != 0 {
				api.EventDestroy(d.evs[i])
				d.evs[i] = 0
			}
		}
		if d.stream != 0 {
			errs = append(errs, api.Check("cuStreamSynchronize", api.StreamSynchronize(d.stream)))
			errs = append(errs, api.Check("cuStreamDestroy_v2", api.StreamDestroy(d.stream)))
			d.stream = 0
		}
		if d.mod != 0 {
			errs = append(errs, api.Check("cuModuleUnload", api.ModuleUnload(d.mod)))
			d.mod = 0
		}
		if d.args != nil {
			d.args.close()
		}
		if d.ctx != 0 {
			errs = append(errs, api.Check("cuDevicePrimaryCtxRelease_v2", api.DevicePrimaryCtxRelease(d.dev)))
			d.ctx = 0
		}
		return errors.Join(errs...)
	})
	d.mu.Lock()
	d.shut = true
	close(d.quit)
	d.mu.Unlock()
	return err
}

// sync waits for all work queued on the device's stream.
func (d *Device) sync() error {
	return d.api.Check("cuStreamSynchronize", d.api.StreamSynchronize(d.stream))
}

// MemInfo returns the device's free and total memory (cuMemGetInfo).
func (d *Device) MemInfo() (free, total uint64, err error) {
	err = d.Do(func() error {
		return d.api.Check("cuMemGetInfo_v2", d.api.MemGetInfo(&free, &total))
	})
	return free, total, err
}
