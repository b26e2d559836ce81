package blaslt

// Enum values from cublasLt.h, cublas_api.h and library_types.h (CUDA 11.8;
// the same values in the 12.x/13.x headers). Checked against the headers by
// TestEnumsMatchHeader through cuda/driver/testdata/cuda_h_values.txt.

// DataType is a cudaDataType_t.
type DataType int32

// Data types.
const (
	R32F    DataType = 0  // CUDA_R_32F
	R16F    DataType = 2  // CUDA_R_16F
	R16BF   DataType = 14 // CUDA_R_16BF
	R8FE4M3 DataType = 28 // CUDA_R_8F_E4M3
	R8FE5M2 DataType = 29 // CUDA_R_8F_E5M2
)

// ComputeType is a cublasComputeType_t.
type ComputeType int32

// Compute32F accumulates in fp32 (CUBLAS_COMPUTE_32F); it never uses TF32.
const Compute32F ComputeType = 68

// Operation is a cublasOperation_t.
type Operation int32

// Operations.
const (
	OpN Operation = 0 // CUBLAS_OP_N
	OpT Operation = 1 // CUBLAS_OP_T
)

// DescAttr is a cublasLtMatmulDescAttributes_t.
type DescAttr int32

// Matmul descriptor attributes.
const (
	DescComputeType  DescAttr = 0  // CUBLASLT_MATMUL_DESC_COMPUTE_TYPE (int32)
	DescScaleType    DescAttr = 1  // CUBLASLT_MATMUL_DESC_SCALE_TYPE (int32)
	DescTransA       DescAttr = 3  // CUBLASLT_MATMUL_DESC_TRANSA (int32)
	DescTransB       DescAttr = 4  // CUBLASLT_MATMUL_DESC_TRANSB (int32)
	DescEpilogue     DescAttr = 7  // CUBLASLT_MATMUL_DESC_EPILOGUE (uint32)
	DescBiasPointer  DescAttr = 8  // CUBLASLT_MATMUL_DESC_BIAS_POINTER (void*)
	DescBiasDataType DescAttr = 26 // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE (int32)
)

// Epilogue is a cublasLtEpilogue_t.
type Epilogue uint32

// Epilogues.
const (
	EpilogueDefault Epilogue = 1 // CUBLASLT_EPILOGUE_DEFAULT
	EpilogueBias    Epilogue = 4 // CUBLASLT_EPILOGUE_BIAS
)

// LayoutAttr is a cublasLtMatrixLayoutAttribute_t.
type LayoutAttr int32

// Layout attributes.
const (
	LayoutType               LayoutAttr = 0 // CUBLASLT_MATRIX_LAYOUT_TYPE (uint32)
	LayoutOrder              LayoutAttr = 1 // CUBLASLT_MATRIX_LAYOUT_ORDER (int32)
	LayoutRows               LayoutAttr = 2 // CUBLASLT_MATRIX_LAYOUT_ROWS (uint64)
	LayoutCols               LayoutAttr = 3 // CUBLASLT_MATRIX_LAYOUT_COLS (uint64)
	LayoutLD                 LayoutAttr = 4 // CUBLASLT_MATRIX_LAYOUT_LD (int64)
	LayoutBatchCount         LayoutAttr = 5 // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (int32)
	LayoutStridedBatchOffset LayoutAttr = 6 // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (int64)
)

// PrefAttr is a cublasLtMatmulPreferenceAttributes_t.
type PrefAttr int32

// Preference attributes.
const (
	PrefMaxWorkspaceBytes PrefAttr = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64)
	PrefMinAlignmentA     PrefAttr = 5 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES (uint32, default 256)
	PrefMinAlignmentB     PrefAttr = 6 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES
	PrefMinAlignmentC     PrefAttr = 7 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES
	PrefMinAlignmentD     PrefAttr = 8 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES
)

// Status values.
const (
	StatusSuccess         Status = 0  // CUBLAS_STATUS_SUCCESS
	StatusNotInitialized  Status = 1  // CUBLAS_STATUS_NOT_INITIALIZED
	StatusAllocFailed     Status = 3  // CUBLAS_STATUS_ALLOC_FAILED
	StatusInvalidValue    Status = 7  // CUBLAS_STATUS_INVALID_VALUE
	StatusArchMismatch    Status = 8  // CUBLAS_STATUS_ARCH_MISMATCH
	StatusExecutionFailed Status = 13 // CUBLAS_STATUS_EXECUTION_FAILED
	StatusInternalError   Status = 14 // CUBLAS_STATUS_INTERNAL_ERROR
	StatusNotSupported    Status = 15 // CUBLAS_STATUS_NOT_SUPPORTED
)

var statusNames = map[Status]string{
	StatusSuccess:         "CUBLAS_STATUS_SUCCESS",
	StatusNotInitialized:  "CUBLAS_STATUS_NOT_INITIALIZED",
	StatusAllocFailed:     "CUBLAS_STATUS_ALLOC_FAILED",
	StatusInvalidValue:    "CUBLAS_STATUS_INVALID_VALUE",
	StatusArchMismatch:    "CUBLAS_STATUS_ARCH_MISMATCH",
	StatusExecutionFailed: "CUBLAS_STATUS_EXECUTION_FAILED",
	StatusInternalError:   "CUBLAS_STATUS_INTERNAL_ERROR",
	StatusNotSupported:    "CUBLAS_STATUS_NOT_SUPPORTED",
}
