// Package driver binds the CUDA driver API (libcuda.so.1) through purego,
// without cgo. The library is opened at run time; every symbol is resolved
// up front by one loader that reports all missing names at once.
//
// API is a table of Go function values, one per C entry point, so tests can
// fill it with a fake driver. Kernel launches bypass the reflective purego
// call path: they go through the Launcher interface, which the real loader
// backs with purego.SyscallN on the raw cuLaunchKernel pointer.
package driver

import "unsafe"

// Result is a CUresult status code.
type Result int32

// Handle types of the driver API. Opaque handles are pointers in C.
type (
	Device    int32   // CUdevice
	Context   uintptr // CUcontext
	Module    uintptr // CUmodule
	Function  uintptr // CUfunction
	Stream    uintptr // CUstream
	Event     uintptr // CUevent
	MemPool   uintptr // CUmemoryPool
	DevicePtr uint64  // CUdeviceptr
)

// Launcher performs cuLaunchKernel. params points at an array of pointers,
// one per kernel argument, each pointing at the argument's value; the driver
// copies the values during the call.
type Launcher interface {
	// CUresult cuLaunchKernel(CUfunction f, unsigned gridDimX, unsigned gridDimY,
	//     unsigned gridDimZ, unsigned blockDimX, unsigned blockDimY, unsigned blockDimZ,
	//     unsigned sharedMemBytes, CUstream hStream, void **kernelParams, void **extra);
	LaunchKernel(f Function, gx, gy, gz, bx, by, bz, smem uint32, s Stream, params unsafe.Pointer) Result
}

// API is the driver function table. The struct tag names the exact exported
// symbol (the _v2 names where cuda.h remaps them); the comment above each
// field is its C prototype.
type API struct {
	// CUresult cuInit(unsigned int Flags);
	Init func(flags uint32) Result `sym:"cuInit"`
	// CUresult cuDriverGetVersion(int *driverVersion);
	DriverGetVersion func(version *int32) Result `sym:"cuDriverGetVersion"`
	// CUresult cuGetErrorName(CUresult error, const char **pStr);
	GetErrorName func(r Result, str **byte) Result `sym:"cuGetErrorName"`
	// CUresult cuGetErrorString(CUresult error, const char **pStr);
	GetErrorString func(r Result, str **byte) Result `sym:"cuGetErrorString"`

	// CUresult cuDeviceGetCount(int *count);
	DeviceGetCount func(count *int32) Result `sym:"cuDeviceGetCount"`
	// CUresult cuDeviceGet(CUdevice *device, int ordinal);
	DeviceGet func(dev *Device, ordinal int32) Result `sym:"cuDeviceGet"`
	// CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
	DeviceGetName func(name *byte, n int32, dev Device) Result `sym:"cuDeviceGetName"`
	// CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev);
	DeviceGetAttribute func(v *int32, attr DeviceAttribute, dev Device) Result `sym:"cuDeviceGetAttribute"`
	// CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev);
	DeviceGetUuid func(uuid *[16]byte, dev Device) Result `sym:"cuDeviceGetUuid_v2"`
	// CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev);
	DeviceTotalMem func(bytes *uint64, dev Device) Result `sym:"cuDeviceTotalMem_v2"`
	// CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev);
	DeviceGetDefaultMemPool func(pool *MemPool, dev Device) Result `sym:"cuDeviceGetDefaultMemPool"`

	// CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev);
	DevicePrimaryCtxRetain func(ctx *Context, dev Device) Result `sym:"cuDevicePrimaryCtxRetain"`
	// CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);
	DevicePrimaryCtxRelease func(dev Device) Result `sym:"cuDevicePrimaryCtxRelease_v2"`
	// CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev);
	DevicePrimaryCtxReset func(dev Device) Result `sym:"cuDevicePrimaryCtxReset_v2"`
	// CUresult cuCtxSetCurrent(CUcontext ctx);
	CtxSetCurrent func(ctx Context) Result `sym:"cuCtxSetCurrent"`
	// CUresult cuCtxGetCurrent(CUcontext *pctx);
	CtxGetCurrent func(ctx *Context) Result `sym:"cuCtxGetCurrent"`
	// CUresult cuCtxSynchronize(void);
	CtxSynchronize func() Result `sym:"cuCtxSynchronize"`

	// CUresult cuModuleLoadData(CUmodule *module, const void *image);
	ModuleLoadData func(mod *Module, image unsafe.Pointer) Result `sym:"cuModuleLoadData"`
	// CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
	//     CUjit_option *options, void **optionValues);
	ModuleLoadDataEx func(mod *Module, image unsafe.Pointer, n uint32, opts *JITOption, vals *uintptr) Result `sym:"cuModuleLoadDataEx"`
	// CUresult cuModuleUnload(CUmodule hmod);
	ModuleUnload func(mod Module) Result `sym:"cuModuleUnload"`
	// CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name);
	ModuleGetFunction func(fn *Function, mod Module, name string) Result `sym:"cuModuleGetFunction"`
	// CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value);
	FuncSetAttribute func(fn Function, attr FuncAttribute, value int32) Result `sym:"cuFuncSetAttribute"`
	// CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc);
	FuncGetAttribute func(v *int32, attr FuncAttribute, fn Function) Result `sym:"cuFuncGetAttribute"`

	// LaunchKernelPtr is the raw address of cuLaunchKernel; Load wraps it in
	// a SyscallLauncher as Launch.
	LaunchKernelPtr uintptr `sym:"cuLaunchKernel"`
	// Launch performs kernel launches (purego.SyscallN on LaunchKernelPtr, so
	// the binding adds no reflection to the per-launch path; fakes supply
	// their own).
	Launch Launcher

	// CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize);
	MemAlloc func(p *DevicePtr, size uint64) Result `sym:"cuMemAlloc_v2"`
	// CUresult cuMemFree_v2(CUdeviceptr dptr);
	MemFree func(p DevicePtr) Result `sym:"cuMemFree_v2"`
	// CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream);
	MemAllocAsync func(p *DevicePtr, size uint64, s Stream) Result `sym:"cuMemAllocAsync"`
	// CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream);
	MemFreeAsync func(p DevicePtr, s Stream) Result `sym:"cuMemFreeAsync"`
	// CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value);
	MemPoolSetAttribute func(pool MemPool, attr MemPoolAttribute, value unsafe.Pointer) Result `sym:"cuMemPoolSetAttribute"`
	// CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep);
	MemPoolTrimTo func(pool MemPool, keep uint64) Result `sym:"cuMemPoolTrimTo"`
	// CUresult cuMemGetInfo_v2(size_t *free, size_t *total);
	MemGetInfo func(free, total *uint64) Result `sym:"cuMemGetInfo_v2"`

	// CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags);
	MemHostAlloc func(pp *unsafe.Pointer, size uint64, flags uint32) Result `sym:"cuMemHostAlloc"`
	// CUresult cuMemFreeHost(void *p);
	MemFreeHost func(p unsafe.Pointer) Result `sym:"cuMemFreeHost"`
	// CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags);
	MemHostRegister func(p unsafe.Pointer, size uint64, flags uint32) Result `sym:"cuMemHostRegister_v2"`
	// CUresult cuMemHostUnregister(void *p);
	MemHostUnregister func(p unsafe.Pointer) Result `sym:"cuMemHostUnregister"`

	// CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount);
	MemcpyHtoD func(dst DevicePtr, src unsafe.Pointer, n uint64) Result `sym:"cuMemcpyHtoD_v2"`
	// CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount);
	MemcpyDtoH func(dst unsafe.Pointer, src DevicePtr, n uint64) Result `sym:"cuMemcpyDtoH_v2"`
	// CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount);
	MemcpyDtoD func(dst, src DevicePtr, n uint64) Result `sym:"cuMemcpyDtoD_v2"`
	// CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream);
	MemcpyHtoDAsync func(dst DevicePtr, src unsafe.Pointer, n uint64, s Stream) Result `sym:"cuMemcpyHtoDAsync_v2"`
	// CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream);
	MemcpyDtoHAsync func(dst unsafe.Pointer, src DevicePtr, n uint64, s Stream) Result `sym:"cuMemcpyDtoHAsync_v2"`
	// CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream);
	MemcpyDtoDAsync func(dst, src DevicePtr, n uint64, s Stream) Result `sym:"cuMemcpyDtoDAsync_v2"`
	// CUresult cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream);
	MemsetD8Async func(dst DevicePtr, v uint8, n uint64, s Stream) Result `sym:"cuMemsetD8Async"`
	// CUresult cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream hStream);
	MemsetD32Async func(dst DevicePtr, v uint32, n uint64, s Stream) Result `sym:"cuMemsetD32Async"`

	// CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags);
	StreamCreate func(s *Stream, flags uint32) Result `sym:"cuStreamCreate"`
	// CUresult cuStreamDestroy_v2(CUstream hStream);
	StreamDestroy func(s Stream) Result `sym:"cuStreamDestroy_v2"`
	// CUresult cuStreamSynchronize(CUstream hStream);
	StreamSynchronize func(s Stream) Result `sym:"cuStreamSynchronize"`
	// CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags);
	StreamWaitEvent func(s Stream, e Event, flags uint32) Result `sym:"cuStreamWaitEvent"`

	// CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags);
	EventCreate func(e *Event, flags uint32) Result `sym:"cuEventCreate"`
	// CUresult cuEventDestroy_v2(CUevent hEvent);
	EventDestroy func(e Event) Result `sym:"cuEventDestroy_v2"`
	// CUresult cuEventRecord(CUevent hEvent, CUstream hStream);
	EventRecord func(e Event, s Stream) Result `sym:"cuEventRecord"`
	// CUresult cuEventSynchronize(CUevent hEvent);
	EventSynchronize func(e Event) Result `sym:"cuEventSynchronize"`
	// CUresult cuEventQuery(CUevent hEvent);
	EventQuery func(e Event) Result `sym:"cuEventQuery"`
	// CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd);
	EventElapsedTime func(ms *float32, start, end Event) Result `sym:"cuEventElapsedTime"`
}
