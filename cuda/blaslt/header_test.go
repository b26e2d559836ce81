package blaslt

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func headerValues(t *testing.T) map[string]int64 {
	t.Helper()
	f, err := os.Open("../driver/testdata/cuda_h_values.txt")
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
			t.Fatal(err)
		}
		m[sc.Text()[:i]] = v
	}
	return m
}

// TestMirrorsMatchHeader checks the Go mirrors of the two C structs and every
// enum value used against cublasLt.h (through the committed golden file).
func TestMirrorsMatchHeader(t *testing.T) {
	h := headerValues(t)
	var r HeuristicResult
	want := map[string]int64{
		"sizeof(cublasLtMatmulAlgo_t)":                             int64(unsafe.Sizeof(MatmulAlgo{})),
		"sizeof(cublasLtMatmulHeuristicResult_t)":                  int64(unsafe.Sizeof(r)),
		"offsetof(cublasLtMatmulHeuristicResult_t, algo)":          int64(unsafe.Offsetof(r.Algo)),
		"offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize)": int64(unsafe.Offsetof(r.WorkspaceSize)),
		"offsetof(cublasLtMatmulHeuristicResult_t, state)":         int64(unsafe.Offsetof(r.State)),
		"offsetof(cublasLtMatmulHeuristicResult_t, wavesCount)":    int64(unsafe.Offsetof(r.WavesCount)),
		"offsetof(cublasLtMatmulHeuristicResult_t, reserved)":      int64(unsafe.Offsetof(r.Reserved)),
		"CUDA_R_32F":                                  int64(R32F),
		"CUDA_R_16F":                                  int64(R16F),
		"CUDA_R_16BF":                                 int64(R16BF),
		"CUDA_R_8F_E4M3":                              int64(R8FE4M3),
		"CUDA_R_8F_E5M2":                              int64(R8FE5M2),
		"CUBLAS_COMPUTE_32F":                          int64(Compute32F),
		"CUBLAS_OP_N":                                 int64(OpN),
		"CUBLAS_OP_T":                                 int64(OpT),
		"CUBLASLT_MATMUL_DESC_COMPUTE_TYPE":           int64(DescComputeType),
		"CUBLASLT_MATMUL_DESC_SCALE_TYPE":             int64(DescScaleType),
		"CUBLASLT_MATMUL_DESC_TRANSA":                 int64(DescTransA),
		"CUBLASLT_MATMUL_DESC_TRANSB":                 int64(DescTransB),
		"CUBLASLT_MATMUL_DESC_EPILOGUE":               int64(DescEpilogue),
		"CUBLASLT_MATMUL_DESC_BIAS_POINTER":           int64(DescBiasPointer),
		"CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE":         int64(DescBiasDataType),
		"CUBLASLT_EPILOGUE_DEFAULT":                   int64(EpilogueDefault),
		"CUBLASLT_EPILOGUE_BIAS":                      int64(EpilogueBias),
		"CUBLASLT_MATRIX_LAYOUT_TYPE":                 int64(LayoutType),
		"CUBLASLT_MATRIX_LAYOUT_ORDER":                int64(LayoutOrder),
		"CUBLASLT_MATRIX_LAYOUT_ROWS":                 int64(LayoutRows),
		"CUBLASLT_MATRIX_LAYOUT_COLS":                 int64(LayoutCols),
		"CUBLASLT_MATRIX_LAYOUT_LD":                   int64(LayoutLD),
		"CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT":          int64(LayoutBatchCount),
		"CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET": int64(LayoutStridedBatchOffset),
		"CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES":    int64(PrefMaxWorkspaceBytes),
		"CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES":  int64(PrefMinAlignmentA),
		"CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES":  int64(PrefMinAlignmentB),
		"CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES":  int64(PrefMinAlignmentC),
		"CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES":  int64(PrefMinAlignmentD),
	}
	for s, name := range statusNames {
		want[name] = int64(s)
	}
	for name, v := range want {
		got, ok := h[name]
		if !ok {
			t.Errorf("%s missing from the golden file", name)
		} else if got != v {
			t.Errorf("%s: Go has %d, header has %d", name, v, got)
		}
	}
}
