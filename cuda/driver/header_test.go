package driver

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// HeaderValues reads the golden "NAME VALUE" file produced from the CUDA
// headers by scripts/cuda-header-probe.sh.
func headerValues(t *testing.T, path string) map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		i := strings.LastIndexByte(sc.Text(), ' ')
		v, err := strconv.ParseInt(sc.Text()[i+1:], 10, 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, sc.Text(), err)
		}
		m[sc.Text()[:i]] = v
	}
	return m
}

func TestEnumsMatchHeader(t *testing.T) {
	h := headerValues(t, "testdata/cuda_h_values.txt")
	want := map[string]int64{
		"sizeof(CUdeviceptr)": int64(unsafe.Sizeof(DevicePtr(0))),
		"sizeof(CUdevice)":    int64(unsafe.Sizeof(Device(0))),
		"sizeof(CUresult)":    int64(unsafe.Sizeof(Result(0))),
		"sizeof(CUcontext)":   int64(unsafe.Sizeof(Context(0))),
		"sizeof(size_t)":      8,

		"CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK":             int64(AttrMaxThreadsPerBlock),
		"CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK":       int64(AttrMaxSharedMemoryPerBlock),
		"CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT":              int64(AttrMultiprocessorCount),
		"CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE":                     int64(AttrL2CacheSize),
		"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR":          int64(AttrComputeCapabilityMajor),
		"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR":          int64(AttrComputeCapabilityMinor),
		"CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN": int64(AttrMaxSharedMemoryPerBlockOptin),
		"CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED": int64(AttrReadOnlyHostRegisterSupported),
		"CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED":            int64(AttrMemoryPoolsSupported),
		"CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK":               int64(FuncAttrMaxThreadsPerBlock),
		"CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES":                   int64(FuncAttrSharedSizeBytes),
		"CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES":                    int64(FuncAttrLocalSizeBytes),
		"CU_FUNC_ATTRIBUTE_NUM_REGS":                            int64(FuncAttrNumRegs),
		"CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES":       int64(FuncAttrMaxDynamicSharedSizeBytes),
		"CU_MEMPOOL_ATTR_RELEASE_THRESHOLD":                     int64(MemPoolAttrReleaseThreshold),
		"CU_JIT_INFO_LOG_BUFFER":                                int64(JITInfoLogBuffer),
		"CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES":                     int64(JITInfoLogBufferSizeBytes),
		"CU_JIT_ERROR_LOG_BUFFER":                               int64(JITErrorLogBuffer),
		"CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES":                    int64(JITErrorLogBufferSizeBytes),
		"CU_JIT_LOG_VERBOSE":                                    int64(JITLogVerbose),
		"CU_STREAM_NON_BLOCKING":                                int64(StreamNonBlocking),
		"CU_EVENT_DEFAULT":                                      int64(EventDefault),
		"CU_EVENT_DISABLE_TIMING":                               int64(EventDisableTiming),
		"CU_MEMHOSTALLOC_PORTABLE":                              int64(MemHostAllocPortable),
		"CU_MEMHOSTALLOC_DEVICEMAP":                             int64(MemHostAllocDevMap),
		"CU_MEMHOSTALLOC_WRITECOMBINED":                         int64(MemHostAllocWC),
		"CU_MEMHOSTREGISTER_PORTABLE":                           int64(MemHostRegPortable),
		"CU_MEMHOSTREGISTER_READ_ONLY":                          int64(MemHostRegReadOnly),
	}
	for code, name := range resultNames {
		want[name] = int64(code)
	}
	for name, v := range want {
		got, ok := h[name]
		if !ok {
			t.Errorf("%s: not in the golden file (extend testdata/header_probe.c and rerun scripts/cuda-header-probe.sh)", name)
			continue
		}
		if got != v {
			t.Errorf("%s: Go has %d, header has %d", name, v, got)
		}
	}
}
