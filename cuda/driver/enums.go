package driver

// Enum values from cuda.h (CUDA 11.8; unchanged in 12.x). Every value here is
// checked against the header by TestEnumsMatchHeader through the golden file
// testdata/cuda_h_values.txt, produced by scripts/cuda-header-probe.sh.

// DeviceAttribute is a CUdevice_attribute.
type DeviceAttribute int32

// Device attributes used by this package.
const (
	AttrMaxThreadsPerBlock            DeviceAttribute = 1  // CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK
	AttrMaxSharedMemoryPerBlock       DeviceAttribute = 8  // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK
	AttrMultiprocessorCount           DeviceAttribute = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	AttrL2CacheSize                   DeviceAttribute = 38 // CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE
	AttrComputeCapabilityMajor        DeviceAttribute = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	AttrComputeCapabilityMinor        DeviceAttribute = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	AttrMaxSharedMemoryPerBlockOptin  DeviceAttribute = 97 // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
	AttrReadOnlyHostRegisterSupported DeviceAttribute = 113
	AttrMemoryPoolsSupported          DeviceAttribute = 115
)

// FuncAttribute is a CUfunction_attribute.
type FuncAttribute int32

// Function attributes used by this package.
const (
	FuncAttrMaxThreadsPerBlock        FuncAttribute = 0 // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
	FuncAttrSharedSizeBytes           FuncAttribute = 1 // CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
	FuncAttrLocalSizeBytes            FuncAttribute = 3 // CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES
	FuncAttrNumRegs                   FuncAttribute = 4 // CU_FUNC_ATTRIBUTE_NUM_REGS
	FuncAttrMaxDynamicSharedSizeBytes FuncAttribute = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
)

// MemPoolAttribute is a CUmemPool_attribute.
type MemPoolAttribute int32

// MemPoolAttrReleaseThreshold (CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, a
// cuuint64_t) is how much freed memory the pool keeps instead of returning it
// to the OS at each synchronisation.
const MemPoolAttrReleaseThreshold MemPoolAttribute = 4

// JITOption is a CUjit_option.
type JITOption int32

// JIT options for cuModuleLoadDataEx.
const (
	JITInfoLogBuffer           JITOption = 3  // CU_JIT_INFO_LOG_BUFFER
	JITInfoLogBufferSizeBytes  JITOption = 4  // CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES
	JITErrorLogBuffer          JITOption = 5  // CU_JIT_ERROR_LOG_BUFFER
	JITErrorLogBufferSizeBytes JITOption = 6  // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
	JITLogVerbose              JITOption = 12 // CU_JIT_LOG_VERBOSE
)

// Flags.
const (
	StreamNonBlocking    uint32 = 1 // CU_STREAM_NON_BLOCKING
	EventDefault         uint32 = 0 // CU_EVENT_DEFAULT (timing enabled)
	EventDisableTiming   uint32 = 2 // CU_EVENT_DISABLE_TIMING
	MemHostAllocPortable uint32 = 1 // CU_MEMHOSTALLOC_PORTABLE
	MemHostAllocDevMap   uint32 = 2 // CU_MEMHOSTALLOC_DEVICEMAP
	MemHostAllocWC       uint32 = 4 // CU_MEMHOSTALLOC_WRITECOMBINED
	MemHostRegPortable   uint32 = 1 // CU_MEMHOSTREGISTER_PORTABLE
	MemHostRegReadOnly   uint32 = 8 // CU_MEMHOSTREGISTER_READ_ONLY
)

// CUresult values the package treats specially.
const (
	Success                  Result = 0   // CUDA_SUCCESS
	ErrInvalidValue          Result = 1   // CUDA_ERROR_INVALID_VALUE
	ErrOutOfMemoryCode       Result = 2   // CUDA_ERROR_OUT_OF_MEMORY
	ErrNotInitialized        Result = 3   // CUDA_ERROR_NOT_INITIALIZED
	ErrDeinitialized         Result = 4   // CUDA_ERROR_DEINITIALIZED
	ErrNoDeviceCode          Result = 100 // CUDA_ERROR_NO_DEVICE
	ErrInvalidDevice         Result = 101 // CUDA_ERROR_INVALID_DEVICE
	ErrInvalidImage          Result = 200 // CUDA_ERROR_INVALID_IMAGE
	ErrInvalidContext        Result = 201 // CUDA_ERROR_INVALID_CONTEXT
	ErrNoBinaryForGPU        Result = 209 // CUDA_ERROR_NO_BINARY_FOR_GPU
	ErrInvalidPTX            Result = 218 // CUDA_ERROR_INVALID_PTX
	ErrUnsupportedPTXVersion Result = 222 // CUDA_ERROR_UNSUPPORTED_PTX_VERSION
	ErrNotFound              Result = 500 // CUDA_ERROR_NOT_FOUND
	ErrNotReady              Result = 600 // CUDA_ERROR_NOT_READY
	ErrIllegalAddress        Result = 700 // CUDA_ERROR_ILLEGAL_ADDRESS
	ErrLaunchOutOfResources  Result = 701 // CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
	ErrLaunchFailed          Result = 719 // CUDA_ERROR_LAUNCH_FAILED
	ErrNotSupported          Result = 801 // CUDA_ERROR_NOT_SUPPORTED
	ErrUnknown               Result = 999 // CUDA_ERROR_UNKNOWN
)

// MinDriverVersion is the oldest driver accepted: CUDA 11.8 (R520), the first
// that loads the PTX 7.8 shipped in the fatbin and has stream-ordered pools.
const MinDriverVersion = 11080

// MinComputeCapability is the oldest GPU the kernels are built for (sm_80).
const MinComputeCapability = 80

// resultNames maps codes to their enum names, for messages when the driver's
// own cuGetErrorName is unavailable (fakes, or a broken library).
var resultNames = map[Result]string{
	Success:                  "CUDA_SUCCESS",
	ErrInvalidValue:          "CUDA_ERROR_INVALID_VALUE",
	ErrOutOfMemoryCode:       "CUDA_ERROR_OUT_OF_MEMORY",
	ErrNotInitialized:        "CUDA_ERROR_NOT_INITIALIZED",
	ErrDeinitialized:         "CUDA_ERROR_DEINITIALIZED",
	ErrNoDeviceCode:          "CUDA_ERROR_NO_DEVICE",
	ErrInvalidDevice:         "CUDA_ERROR_INVALID_DEVICE",
	ErrInvalidImage:          "CUDA_ERROR_INVALID_IMAGE",
	ErrInvalidContext:        "CUDA_ERROR_INVALID_CONTEXT",
	ErrNoBinaryForGPU:        "CUDA_ERROR_NO_BINARY_FOR_GPU",
	ErrInvalidPTX:            "CUDA_ERROR_INVALID_PTX",
	ErrUnsupportedPTXVersion: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	ErrNotFound:              "CUDA_ERROR_NOT_FOUND",
	ErrNotReady:              "CUDA_ERROR_NOT_READY",
	ErrIllegalAddress:        "CUDA_ERROR_ILLEGAL_ADDRESS",
	ErrLaunchOutOfResources:  "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	ErrLaunchFailed:          "CUDA_ERROR_LAUNCH_FAILED",
	ErrNotSupported:          "CUDA_ERROR_NOT_SUPPORTED",
	ErrUnknown:               "CUDA_ERROR_UNKNOWN",
}
