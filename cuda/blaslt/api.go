// Package blaslt binds the parts of cuBLASLt (libcublasLt.so.13/.12/.11)
// that the CUDA backend uses for its GEMMs, through purego without cgo, and
// wraps them in a small Linear-layer planner with cached descriptors.
package blaslt

import (
	"fmt"
	"unsafe"
)

// Status is a cublasStatus_t.
type Status int32

// Opaque handle types.
type (
	Handle     uintptr // cublasLtHandle_t
	MatmulDesc uintptr // cublasLtMatmulDesc_t
	Layout     uintptr // cublasLtMatrixLayout_t
	Preference uintptr // cublasLtMatmulPreference_t
)

// MatmulAlgo mirrors cublasLtMatmulAlgo_t (uint64_t data[8], 64 bytes).
type MatmulAlgo struct {
	Data [8]uint64
}

// HeuristicResult mirrors cublasLtMatmulHeuristicResult_t (96 bytes):
// algo at 0, workspaceSize at 64, state at 72, wavesCount at 76,
// reserved[4] at 80.
type HeuristicResult struct {
	Algo          MatmulAlgo
	WorkspaceSize uint64
	State         Status
	WavesCount    float32
	Reserved      [4]int32
}

// API is the cuBLASLt function table; tags name the exported symbols and the
// comment above each field is its C prototype.
type API struct {
	// size_t cublasLtGetVersion(void);
	GetVersion func() uint64 `sym:"cublasLtGetVersion"`
	// const char* cublasLtGetStatusName(cublasStatus_t status);
	GetStatusName func(s Status) uintptr `sym:"cublasLtGetStatusName"`
	// const char* cublasLtGetStatusString(cublasStatus_t status);
	GetStatusString func(s Status) uintptr `sym:"cublasLtGetStatusString"`

	// cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle);
	Create func(h *Handle) Status `sym:"cublasLtCreate"`
	// cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle);
	Destroy func(h Handle) Status `sym:"cublasLtDestroy"`

	// cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc,
	//     cublasComputeType_t computeType, cudaDataType_t scaleType);
	MatmulDescCreate func(d *MatmulDesc, compute ComputeType, scale DataType) Status `sym:"cublasLtMatmulDescCreate"`
	// cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc);
	MatmulDescDestroy func(d MatmulDesc) Status `sym:"cublasLtMatmulDescDestroy"`
	// cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
	//     cublasLtMatmulDescAttributes_t attr, const void* buf, size_t sizeInBytes);
	MatmulDescSetAttribute func(d MatmulDesc, attr DescAttr, buf unsafe.Pointer, size uint64) Status `sym:"cublasLtMatmulDescSetAttribute"`
	// cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t matmulDesc,
	//     cublasLtMatmulDescAttributes_t attr, void* buf, size_t sizeInBytes, size_t* sizeWritten);
	MatmulDescGetAttribute func(d MatmulDesc, attr DescAttr, buf unsafe.Pointer, size uint64, written *uint64) Status `sym:"cublasLtMatmulDescGetAttribute"`

	// cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout,
	//     cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld);
	MatrixLayoutCreate func(l *Layout, typ DataType, rows, cols uint64, ld int64) Status `sym:"cublasLtMatrixLayoutCreate"`
	// cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout);
	MatrixLayoutDestroy func(l Layout) Status `sym:"cublasLtMatrixLayoutDestroy"`
	// cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
	//     cublasLtMatrixLayoutAttribute_t attr, const void* buf, size_t sizeInBytes);
	MatrixLayoutSetAttribute func(l Layout, attr LayoutAttr, buf unsafe.Pointer, size uint64) Status `sym:"cublasLtMatrixLayoutSetAttribute"`
	// cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t matLayout,
	//     cublasLtMatrixLayoutAttribute_t attr, void* buf, size_t sizeInBytes, size_t* sizeWritten);
	MatrixLayoutGetAttribute func(l Layout, attr LayoutAttr, buf unsafe.Pointer, size uint64, written *uint64) Status `sym:"cublasLtMatrixLayoutGetAttribute"`

	// cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref);
	MatmulPreferenceCreate func(p *Preference) Status `sym:"cublasLtMatmulPreferenceCreate"`
	// cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
	MatmulPreferenceDestroy func(p Preference) Status `sym:"cublasLtMatmulPreferenceDestroy"`
	// cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
	//     cublasLtMatmulPreferenceAttributes_t attr, const void* buf, size_t sizeInBytes);
	MatmulPreferenceSetAttribute func(p Preference, attr PrefAttr, buf unsafe.Pointer, size uint64) Status `sym:"cublasLtMatmulPreferenceSetAttribute"`

	// cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle,
	//     cublasLtMatmulDesc_t operationDesc, cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
	//     cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t preference,
	//     int requestedAlgoCount, cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount);
	MatmulAlgoGetHeuristic func(h Handle, d MatmulDesc, a, b, c, dd Layout, p Preference, requested int32, results *HeuristicResult, returned *int32) Status `sym:"cublasLtMatmulAlgoGetHeuristic"`

	// cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
	//     const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
	//     cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc,
	//     void* D, cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo, void* workspace,
	//     size_t workspaceSizeInBytes, cudaStream_t stream);
	//
	// A, B, C, D and workspace are device addresses, passed as integers.
	Matmul func(h Handle, d MatmulDesc, alpha unsafe.Pointer, a uint64, la Layout, b uint64, lb Layout,
		beta unsafe.Pointer, c uint64, lc Layout, dd uint64, ld Layout, algo *MatmulAlgo,
		ws uint64, wsSize uint64, stream uintptr) Status `sym:"cublasLtMatmul"`
}

// Error is a failed cuBLASLt call.
type Error struct {
	Func   string
	Status Status
	Name   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d)", e.Func, e.Name, int32(e.Status))
}

// Check returns nil for CUBLAS_STATUS_SUCCESS and an *Error otherwise.
func (a *API) Check(fn string, s Status) error {
	if s == StatusSuccess {
		return nil
	}
	name := statusNames[s]
	if name == "" {
		name = "CUBLAS_STATUS_UNKNOWN"
	}
	return &Error{Func: fn, Status: s, Name: name}
}
