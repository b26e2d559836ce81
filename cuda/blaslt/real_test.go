package blaslt

import (
	"errors"
	"testing"
	"unsafe"
)

func loadOrSkip(t *testing.T) *API {
	t.Helper()
	api, name, err := Load()
	if errors.Is(err, ErrNoLibrary) {
		t.Skipf("no cuBLASLt: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %s version %d", name, api.GetVersion())
	return api
}

// TestDescriptorsOnRealLibrary runs the descriptor and layout code against
// the real cuBLASLt; these calls need no GPU. On a GPU-less machine
// cublasLtCreate must fail cleanly with NOT_INITIALIZED.
func TestDescriptorsOnRealLibrary(t *testing.T) {
	api := loadOrSkip(t)
	s := Spec{M: 3072, N: 77, K: 2560, TransA: true, LDA: 2560, LDB: 2560, LDD: 3072,
		AType: R16BF, BType: R16BF, DType: R16BF, Bias: true}
	p, err := Describe(api, s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.destroy(api)
	getI32 := func(attr DescAttr) int32 {
		var v int32
		var n uint64
		if err := api.Check("get", api.MatmulDescGetAttribute(p.desc, attr, unsafe.Pointer(&v), 4, &n)); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if getI32(DescTransA) != int32(OpT) || getI32(DescTransB) != int32(OpN) {
		t.Error("trans attributes did not round-trip")
	}
	if getI32(DescEpilogue) != int32(EpilogueBias) || getI32(DescBiasDataType) != int32(R16BF) {
		t.Error("epilogue attributes did not round-trip")
	}
	if getI32(DescComputeType) != int32(Compute32F) || getI32(DescScaleType) != int32(R32F) {
		t.Error("compute/scale type did not round-trip")
	}
	if err := p.setBias(api, 0xdead00); err != nil {
		t.Fatal(err)
	}
	var bias uint64
	var n uint64
	if err := api.Check("get", api.MatmulDescGetAttribute(p.desc, DescBiasPointer, unsafe.Pointer(&bias), 8, &n)); err != nil || bias != 0xdead00 {
		t.Errorf("bias pointer round-trip: %x %v", bias, err)
	}
	// A wrong attribute size is rejected with INVALID_VALUE, not a crash.
	var small int16
	if st := api.MatmulDescSetAttribute(p.desc, DescTransA, unsafe.Pointer(&small), 2); st != StatusInvalidValue {
		t.Errorf("wrong size: status %d, want %d", st, StatusInvalidValue)
	}
	layout := func(l Layout, attr LayoutAttr) uint64 {
		var v uint64
		if err := api.Check("get", api.MatrixLayoutGetAttribute(l, attr, unsafe.Pointer(&v), 8, &n)); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if r, c := layout(p.la, LayoutRows), layout(p.la, LayoutCols); r != 2560 || c != 3072 {
		t.Errorf("A layout %dx%d, want 2560x3072 (stored K×M for TransA)", r, c)
	}
	if r, c, ld := layout(p.l, LayoutRows), layout(p.l, LayoutCols), layout(p.l, LayoutLD); r != 3072 || c != 77 || ld != 3072 {
		t.Errorf("D layout %dx%d ld %d", r, c, ld)
	}

	// Batched layouts carry the count and stride.
	bs := Spec{M: 64, N: 64, K: 128, TransA: true, LDA: 3840, LDB: 3840, LDD: 64, Batch: 30,
		StrideA: 128, StrideB: 128, StrideD: 64 * 64, AType: R32F, BType: R32F, DType: R32F}
	bp, err := Describe(api, bs)
	if err != nil {
		t.Fatal(err)
	}
	defer bp.destroy(api)
	var cnt int32
	if err := api.Check("get", api.MatrixLayoutGetAttribute(bp.lb, LayoutBatchCount, unsafe.Pointer(&cnt), 4, &n)); err != nil || cnt != 30 {
		t.Errorf("batch count %d %v", cnt, err)
	}
	if st := layout(bp.l, LayoutStridedBatchOffset); st != 64*64 {
		t.Errorf("batch stride %d", st)
	}

	var h Handle
	st := api.Create(&h)
	t.Logf("cublasLtCreate: %d", st)
	if st == StatusSuccess {
		api.Destroy(h)
	} else if st != StatusNotInitialized {
		t.Errorf("cublasLtCreate without a GPU: status %d, want NOT_INITIALIZED", st)
	}
	if _, err := NewGemm(api, 0, 0); st != StatusSuccess && err == nil {
		t.Error("NewGemm succeeded without a GPU")
	}
}

func TestSpecValidation(t *testing.T) {
	bad := []Spec{
		{M: 0, N: 1, K: 1, LDA: 1, LDB: 1, LDD: 1},
		{M: 4, N: 4, K: 8, LDA: 3, LDB: 8, LDD: 4},
		{M: 4, N: 4, K: 8, TransA: true, LDA: 4, LDB: 8, LDD: 4},
	}
	for _, s := range bad {
		if err := s.validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}
