package blaslt

import (
	"errors"
	"fmt"
	"unsafe"
)

// Spec describes one column-major GEMM the way cuBLASLt sees it:
//
//	D[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · D (+ bias[M] broadcast over columns)
//
// A is stored M×K (TransA false) or K×M (TransA true) with leading dimension
// LDA; likewise B. D is M×N with leading dimension LDD and is also C.
// Batch > 1 runs Batch independent products whose operands are StrideX
// elements apart.
type Spec struct {
	M, N, K        int
	TransA, TransB bool
	LDA, LDB, LDD  int
	Batch          int
	StrideA        int64
	StrideB        int64
	StrideD        int64
	AType, BType   DataType
	DType          DataType // type of C and D
	Bias           bool     // bias epilogue, bias of type DType
	// AlignA, AlignB, AlignD are the byte alignments (powers of two, at most
	// 256) the operands' addresses are guaranteed to have; 0 means 256, the
	// cuBLASLt default. Algorithms that need more are excluded.
	AlignA, AlignB, AlignD uint32
}

// Align returns the largest power of two up to 256 that divides every value
// (addresses, leading dimensions and batch strides in bytes).
func Align(vals ...uint64) uint32 {
	a := uint64(256)
	for _, v := range vals {
		for a > 1 && v%a != 0 {
			a >>= 1
		}
	}
	return uint32(a)
}

func (s Spec) validate() error {
	if s.M <= 0 || s.N <= 0 || s.K <= 0 {
		return fmt.Errorf("blaslt: bad GEMM size %dx%dx%d", s.M, s.N, s.K)
	}
	ar, _ := s.M, s.K
	if s.TransA {
		ar = s.K
	}
	br := s.K
	if s.TransB {
		br = s.N
	}
	if s.LDA < ar || s.LDB < br || s.LDD < s.M {
		return fmt.Errorf("blaslt: leading dimension too small (lda %d<%d, ldb %d<%d or ldd %d<%d)", s.LDA, ar, s.LDB, br, s.LDD, s.M)
	}
	if s.Batch > 1 && s.Bias {
		return errors.New("blaslt: bias with batched GEMM is not used")
	}
	return nil
}

// Plan is a GEMM configuration with its descriptors and chosen algorithm.
type Plan struct {
	Spec      Spec
	desc      MatmulDesc
	la, lb, l Layout
	pref      Preference // own preference when alignments are below 256
	algo      MatmulAlgo
	wsNeeded  uint64
}

// Gemm creates and caches plans on one cuBLASLt handle. It is not safe for
// concurrent use (the backend calls it from its device goroutine).
type Gemm struct {
	api     *API
	h       Handle
	pref    Preference
	ws      uint64 // device workspace address
	wsSize  uint64
	plans   map[Spec]*Plan
	scalars *[2]float32 // alpha, beta: host memory read during the call
}

// NewGemm creates a handle and a preference allowing wsSize bytes of the
// device workspace at ws.
func NewGemm(api *API, ws, wsSize uint64) (*Gemm, error) {
	g := &Gemm{api: api, ws: ws, wsSize: wsSize, plans: map[Spec]*Plan{}, scalars: new([2]float32)}
	if err := api.Check("cublasLtCreate", api.Create(&g.h)); err != nil {
		return nil, err
	}
	if err := api.Check("cublasLtMatmulPreferenceCreate", api.MatmulPreferenceCreate(&g.pref)); err != nil {
		api.Destroy(g.h)
		return nil, err
	}
	v := wsSize
	if err := api.Check("cublasLtMatmulPreferenceSetAttribute",
		api.MatmulPreferenceSetAttribute(g.pref, PrefMaxWorkspaceBytes, unsafe.Pointer(&v), 8)); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Close destroys every cached plan and the handle.
func (g *Gemm) Close() {
	for _, p := range g.plans {
		p.destroy(g.api)
	}
	g.plans = nil
	if g.pref != 0 {
		g.api.MatmulPreferenceDestroy(g.pref)
		g.pref = 0
	}
	if g.h != 0 {
		g.api.Destroy(g.h)
		g.h = 0
	}
}

func (p *Plan) destroy(api *API) {
	if p.pref != 0 {
		api.MatmulPreferenceDestroy(p.pref)
		p.pref = 0
	}
	for _, l := range []Layout{p.la, p.lb, p.l} {
		if l != 0 {
			api.MatrixLayoutDestroy(l)
		}
	}
	if p.desc != 0 {
		api.MatmulDescDestroy(p.desc)
	}
}

// Describe builds the descriptor and layouts for s without choosing an
// algorithm (needs no GPU; used by Plan and by tests).
func Describe(api *API, s Spec) (*Plan, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	p := &Plan{Spec: s}
	fail := func(err error) (*Plan, error) { p.destroy(api); return nil, err }
	if err := api.Check("cublasLtMatmulDescCreate", api.MatmulDescCreate(&p.desc, Compute32F, R32F)); err != nil {
		return nil, err
	}
	setI32 := func(attr DescAttr, v int32) error {
		return api.Check("cublasLtMatmulDescSetAttribute", api.MatmulDescSetAttribute(p.desc, attr, unsafe.Pointer(&v), 4))
	}
	op := func(t bool) int32 {
		if t {
			return int32(OpT)
		}
		return int32(OpN)
	}
	ep := EpilogueDefault
	if s.Bias {
		ep = EpilogueBias
	}
	epv := uint32(ep)
	err := errors.Join(setI32(DescTransA, op(s.TransA)), setI32(DescTransB, op(s.TransB)),
		api.Check("cublasLtMatmulDescSetAttribute", api.MatmulDescSetAttribute(p.desc, DescEpilogue, unsafe.Pointer(&epv), 4)))
	if err == nil && s.Bias {
		err = setI32(DescBiasDataType, int32(s.DType))
	}
	if err != nil {
		return fail(err)
	}
	rowsA, colsA := s.M, s.K
	if s.TransA {
		rowsA, colsA = s.K, s.M
	}
	rowsB, colsB := s.K, s.N
	if s.TransB {
		rowsB, colsB = s.N, s.K
	}
	mk := func(l *Layout, t DataType, rows, cols, ld int, stride int64) error {
		if err := api.Check("cublasLtMatrixLayoutCreate", api.MatrixLayoutCreate(l, t, uint64(rows), uint64(cols), int64(ld))); err != nil {
			return err
		}
		if s.Batch > 1 {
			b := int32(s.Batch)
			if err := api.Check("cublasLtMatrixLayoutSetAttribute", api.MatrixLayoutSetAttribute(*l, LayoutBatchCount, unsafe.Pointer(&b), 4)); err != nil {
				return err
			}
			if err := api.Check("cublasLtMatrixLayoutSetAttribute", api.MatrixLayoutSetAttribute(*l, LayoutStridedBatchOffset, unsafe.Pointer(&stride), 8)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := errors.Join(mk(&p.la, s.AType, rowsA, colsA, s.LDA, s.StrideA),
		mk(&p.lb, s.BType, rowsB, colsB, s.LDB, s.StrideB),
		mk(&p.l, s.DType, s.M, s.N, s.LDD, s.StrideD)); err != nil {
		return fail(err)
	}
	return p, nil
}

// Plan returns the cached plan for s, creating it and querying the heuristic
// for the best algorithm on first use.
func (g *Gemm) Plan(s Spec) (*Plan, error) {
	if p, ok := g.plans[s]; ok {
		return p, nil
	}
	p, err := Describe(g.api, s)
	if err != nil {
		return nil, err
	}
	if s.Bias {
		// The heuristic looks at the bias pointer's alignment; any aligned
		// non-null address stands in until Run sets the real one.
		if err := p.setBias(g.api, 256); err != nil {
			p.destroy(g.api)
			return nil, err
		}
	}
	pref := g.pref
	if a := [4]uint32{s.AlignA, s.AlignB, s.AlignD, s.AlignD}; a != [4]uint32{} && a != [4]uint32{256, 256, 256, 256} {
		if err := g.alignedPref(p, a); err != nil {
			p.destroy(g.api)
			return nil, err
		}
		pref = p.pref
	}
	var res HeuristicResult
	var n int32
	if err := g.api.Check("cublasLtMatmulAlgoGetHeuristic",
		g.api.MatmulAlgoGetHeuristic(g.h, p.desc, p.la, p.lb, p.l, p.l, pref, 1, &res, &n)); err != nil {
		p.destroy(g.api)
		return nil, fmt.Errorf("%w (GEMM %+v)", err, s)
	}
	if n < 1 || res.State != StatusSuccess {
		p.destroy(g.api)
		return nil, fmt.Errorf("cuda: cublasLtMatmulAlgoGetHeuristic: no algorithm for GEMM %+v (state %d)", s, res.State)
	}
	p.algo, p.wsNeeded = res.Algo, res.WorkspaceSize
	g.plans[s] = p
	return p, nil
}

// alignedPref gives p its own preference with the workspace limit and the
// operand alignments a (A, B, C, D; 0 = 256).
func (g *Gemm) alignedPref(p *Plan, a [4]uint32) error {
	api := g.api
	if err := api.Check("cublasLtMatmulPreferenceCreate", api.MatmulPreferenceCreate(&p.pref)); err != nil {
		return err
	}
	ws := g.wsSize
	if err := api.Check("cublasLtMatmulPreferenceSetAttribute",
		api.MatmulPreferenceSetAttribute(p.pref, PrefMaxWorkspaceBytes, unsafe.Pointer(&ws), 8)); err != nil {
		return err
	}
	for i, attr := range []PrefAttr{PrefMinAlignmentA, PrefMinAlignmentB, PrefMinAlignmentC, PrefMinAlignmentD} {
		v := a[i]
		if v == 0 {
			v = 256
		}
		if err := api.Check("cublasLtMatmulPreferenceSetAttribute",
			api.MatmulPreferenceSetAttribute(p.pref, attr, unsafe.Pointer(&v), 4)); err != nil {
			return err
		}
	}
	return nil
}

func (p *Plan) setBias(api *API, bias uint64) error {
	return api.Check("cublasLtMatmulDescSetAttribute", api.MatmulDescSetAttribute(p.desc, DescBiasPointer, unsafe.Pointer(&bias), 8))
}

// Run enqueues D = alpha·op(A)·op(B) + beta·D (+ bias) on stream. a, b, d
// and bias are device addresses; bias is ignored unless the plan has one.
func (g *Gemm) Run(p *Plan, a, b, d, bias uint64, alpha, beta float32, stream uintptr) error {
	if p.Spec.Bias {
		if bias == 0 {
			return errors.New("blaslt: plan has a bias epilogue but bias is nil")
		}
		if err := p.setBias(g.api, bias); err != nil {
			return err
		}
	}
	g.scalars[0], g.scalars[1] = alpha, beta
	return g.api.Check("cublasLtMatmul", g.api.Matmul(g.h, p.desc,
		unsafe.Pointer(&g.scalars[0]), a, p.la, b, p.lb, unsafe.Pointer(&g.scalars[1]), d, p.l, d, p.l,
		&p.algo, g.ws, g.wsSize, stream))
}

// Plans returns the number of cached plans.
func (g *Gemm) Plans() int { return len(g.plans) }
