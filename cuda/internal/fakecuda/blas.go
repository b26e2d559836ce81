package fakecuda

import (
	"math"
	"sync"
	"unsafe"

	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/weights"
)

// BLAS is a fake cuBLASLt computing matmuls in float64 on the host memory of
// a Fake, following the descriptor and layout semantics of cublasLtMatmul.
type BLAS struct {
	API *blaslt.API
	f   *Fake

	// CreateResult is returned by cublasLtCreate (default success).
	CreateResult blaslt.Status

	mu      sync.Mutex
	next    uintptr
	descs   map[uintptr]*desc
	layouts map[uintptr]*layout
	prefs   map[uintptr]*[4]uint32 // minimum alignments A, B, C, D
	handles map[uintptr]bool
	Matmuls int
}

type desc struct {
	compute  blaslt.ComputeType
	scale    blaslt.DataType
	transA   int32
	transB   int32
	epilogue uint32
	bias     uint64
	biasType int32
}

type layout struct {
	typ        blaslt.DataType
	rows, cols uint64
	ld         int64
	batch      int32
	stride     int64
}

// NewBLAS returns a fake cuBLASLt over f's memory.
func NewBLAS(f *Fake) *BLAS {
	b := &BLAS{f: f, next: 0x1000, descs: map[uintptr]*desc{}, layouts: map[uintptr]*layout{},
		prefs: map[uintptr]*[4]uint32{}, handles: map[uintptr]bool{}}
	b.API = b.table()
	return b
}

// Leaks reports live handles, descriptors, layouts and preferences.
func (b *BLAS) Leaks() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.descs) + len(b.layouts) + len(b.prefs) + len(b.handles)
}

func (b *BLAS) id() uintptr { b.next += 16; return b.next }

func (b *BLAS) table() *blaslt.API {
	api := &blaslt.API{}
	api.GetVersion = func() uint64 { return 130000 }
	api.GetStatusName = func(blaslt.Status) uintptr { return 0 }
	api.GetStatusString = func(blaslt.Status) uintptr { return 0 }
	api.Create = func(h *blaslt.Handle) blaslt.Status {
		if b.CreateResult != blaslt.StatusSuccess {
			return b.CreateResult
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		id := b.id()
		b.handles[id] = true
		*h = blaslt.Handle(id)
		return blaslt.StatusSuccess
	}
	api.Destroy = func(h blaslt.Handle) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.handles, uintptr(h))
		return blaslt.StatusSuccess
	}
	api.MatmulDescCreate = func(d *blaslt.MatmulDesc, c blaslt.ComputeType, s blaslt.DataType) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		id := b.id()
		b.descs[id] = &desc{compute: c, scale: s, epilogue: uint32(blaslt.EpilogueDefault)}
		*d = blaslt.MatmulDesc(id)
		return blaslt.StatusSuccess
	}
	api.MatmulDescDestroy = func(d blaslt.MatmulDesc) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.descs, uintptr(d))
		return blaslt.StatusSuccess
	}
	api.MatmulDescSetAttribute = func(d blaslt.MatmulDesc, a blaslt.DescAttr, buf unsafe.Pointer, n uint64) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		ds := b.descs[uintptr(d)]
		if ds == nil || buf == nil {
			return blaslt.StatusInvalidValue
		}
		i32 := func(p *int32) blaslt.Status {
			if n != 4 {
				return blaslt.StatusInvalidValue
			}
			*p = *(*int32)(buf)
			return blaslt.StatusSuccess
		}
		switch a {
		case blaslt.DescTransA:
			return i32(&ds.transA)
		case blaslt.DescTransB:
			return i32(&ds.transB)
		case blaslt.DescBiasDataType:
			return i32(&ds.biasType)
		case blaslt.DescEpilogue:
			if n != 4 {
				return blaslt.StatusInvalidValue
			}
			ds.epilogue = *(*uint32)(buf)
		case blaslt.DescBiasPointer:
			if n != 8 {
				return blaslt.StatusInvalidValue
			}
			ds.bias = *(*uint64)(buf)
		default:
			return blaslt.StatusInvalidValue
		}
		return blaslt.StatusSuccess
	}
	api.MatmulDescGetAttribute = func(blaslt.MatmulDesc, blaslt.DescAttr, unsafe.Pointer, uint64, *uint64) blaslt.Status {
		return blaslt.StatusNotSupported
	}
	api.MatrixLayoutCreate = func(l *blaslt.Layout, t blaslt.DataType, rows, cols uint64, ld int64) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		id := b.id()
		b.layouts[id] = &layout{typ: t, rows: rows, cols: cols, ld: ld, batch: 1}
		*l = blaslt.Layout(id)
		return blaslt.StatusSuccess
	}
	api.MatrixLayoutDestroy = func(l blaslt.Layout) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.layouts, uintptr(l))
		return blaslt.StatusSuccess
	}
	api.MatrixLayoutSetAttribute = func(l blaslt.Layout, a blaslt.LayoutAttr, buf unsafe.Pointer, n uint64) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		ls := b.layouts[uintptr(l)]
		if ls == nil || buf == nil {
			return blaslt.StatusInvalidValue
		}
		switch a {
		case blaslt.LayoutBatchCount:
			if n != 4 {
				return blaslt.StatusInvalidValue
			}
			ls.batch = *(*int32)(buf)
		case blaslt.LayoutStridedBatchOffset:
			if n != 8 {
				return blaslt.StatusInvalidValue
			}
			ls.stride = *(*int64)(buf)
		default:
			return blaslt.StatusInvalidValue
		}
		return blaslt.StatusSuccess
	}
	api.MatrixLayoutGetAttribute = func(blaslt.Layout, blaslt.LayoutAttr, unsafe.Pointer, uint64, *uint64) blaslt.Status {
		return blaslt.StatusNotSupported
	}
	api.MatmulPreferenceCreate = func(p *blaslt.Preference) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		id := b.id()
		b.prefs[id] = &[4]uint32{256, 256, 256, 256}
		*p = blaslt.Preference(id)
		return blaslt.StatusSuccess
	}
	api.MatmulPreferenceDestroy = func(p blaslt.Preference) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.prefs, uintptr(p))
		return blaslt.StatusSuccess
	}
	api.MatmulPreferenceSetAttribute = func(p blaslt.Preference, a blaslt.PrefAttr, buf unsafe.Pointer, n uint64) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		al := b.prefs[uintptr(p)]
		switch {
		case al == nil:
			return blaslt.StatusInvalidValue
		case a == blaslt.PrefMaxWorkspaceBytes && n == 8:
		case a >= blaslt.PrefMinAlignmentA && a <= blaslt.PrefMinAlignmentD && n == 4:
			v := *(*uint32)(buf)
			if v == 0 || v&(v-1) != 0 {
				return blaslt.StatusInvalidValue
			}
			al[a-blaslt.PrefMinAlignmentA] = v
		default:
			return blaslt.StatusInvalidValue
		}
		return blaslt.StatusSuccess
	}
	api.MatmulAlgoGetHeuristic = func(h blaslt.Handle, d blaslt.MatmulDesc, la, lb, lc, ld blaslt.Layout, p blaslt.Preference,
		req int32, res *blaslt.HeuristicResult, n *int32) blaslt.Status {
		b.mu.Lock()
		defer b.mu.Unlock()
		al := b.prefs[uintptr(p)]
		if !b.handles[uintptr(h)] || b.descs[uintptr(d)] == nil || req < 1 || al == nil {
			return blaslt.StatusInvalidValue
		}
		if _, st := b.check(b.descs[uintptr(d)], la, lb, lc, ld); st != blaslt.StatusSuccess {
			return st
		}
		*res = blaslt.HeuristicResult{State: blaslt.StatusSuccess, WavesCount: 1}
		// The chosen algorithm assumes the preference's alignments; Matmul
		// checks the operands against them.
		res.Algo.Data[0] = 42
		for i, v := range al {
			res.Algo.Data[1+i] = uint64(v)
		}
		*n = 1
		return blaslt.StatusSuccess
	}
	api.Matmul = b.matmul
	return api
}

type dims struct {
	m, n, k  int
	a, bl, c *layout
}

// check validates the layouts against the operation like cuBLASLt does and
// returns the problem size.
func (b *BLAS) check(d *desc, la, lb, lc, ld blaslt.Layout) (dims, blaslt.Status) {
	a, bl, c, dd := b.layouts[uintptr(la)], b.layouts[uintptr(lb)], b.layouts[uintptr(lc)], b.layouts[uintptr(ld)]
	if a == nil || bl == nil || c == nil || dd == nil {
		return dims{}, blaslt.StatusInvalidValue
	}
	m, k := int(a.rows), int(a.cols)
	if d.transA == 1 {
		m, k = k, m
	}
	kb, n := int(bl.rows), int(bl.cols)
	if d.transB == 1 {
		kb, n = n, kb
	}
	if k != kb || int(c.rows) != m || int(c.cols) != n || *c != *dd {
		return dims{}, blaslt.StatusInvalidValue
	}
	if int64(a.rows) > a.ld || int64(bl.rows) > bl.ld || int64(c.rows) > c.ld {
		return dims{}, blaslt.StatusInvalidValue
	}
	if a.batch != c.batch || bl.batch != c.batch {
		return dims{}, blaslt.StatusInvalidValue
	}
	if d.epilogue == uint32(blaslt.EpilogueBias) && d.biasType != int32(c.typ) {
		return dims{}, blaslt.StatusNotSupported
	}
	if (a.typ != bl.typ) || (a.typ == blaslt.R32F && c.typ != blaslt.R32F) {
		return dims{}, blaslt.StatusNotSupported
	}
	return dims{m: m, n: n, k: k, a: a, bl: bl, c: c}, blaslt.StatusSuccess
}

func (b *BLAS) matmul(h blaslt.Handle, dsc blaslt.MatmulDesc, alpha unsafe.Pointer, pa uint64, la blaslt.Layout, pb uint64, lb blaslt.Layout,
	beta unsafe.Pointer, pc uint64, lc blaslt.Layout, pd uint64, ld blaslt.Layout, algo *blaslt.MatmulAlgo,
	ws uint64, wsSize uint64, stream uintptr) blaslt.Status {
	b.mu.Lock()
	d := b.descs[uintptr(dsc)]
	if !b.handles[uintptr(h)] || d == nil || algo == nil || algo.Data[0] != 42 {
		b.mu.Unlock()
		return blaslt.StatusInvalidValue
	}
	dm, st := b.check(d, la, lb, lc, ld)
	b.Matmuls++
	b.mu.Unlock()
	if st != blaslt.StatusSuccess {
		return st
	}
	if pc != pd {
		return blaslt.StatusNotSupported // the backend always runs in place
	}
	for i, p := range []uint64{pa, pb, pc, pd} {
		if al := algo.Data[1+i]; al != 0 && p%al != 0 {
			b.f.mu.Lock()
			b.f.fail("matmul operand %c at %#x is not %d-byte aligned as the algorithm assumes", "ABCD"[i], p, al)
			b.f.mu.Unlock()
			return blaslt.StatusInvalidValue
		}
	}
	al, be := float64(*(*float32)(alpha)), float64(*(*float32)(beta))
	f := b.f
	f.mu.Lock()
	defer f.mu.Unlock()
	span := func(l *layout, base uint64) ([]byte, bool) {
		es := uint64(esize(l.typ))
		last := uint64(l.ld)*(l.cols-1) + l.rows
		if l.batch > 1 {
			last += uint64(l.stride) * uint64(l.batch-1)
		}
		return f.find(base, last*es)
	}
	ma, okA := span(dm.a, pa)
	mb, okB := span(dm.bl, pb)
	md, okD := span(dm.c, pd)
	if !okA || !okB || !okD {
		f.fail("matmul operand outside live allocations")
		return blaslt.StatusInvalidValue
	}
	var bias []byte
	if d.epilogue == uint32(blaslt.EpilogueBias) {
		var ok bool
		if bias, ok = f.find(d.bias, uint64(dm.m*esize(dm.c.typ))); !ok {
			f.fail("matmul bias outside live allocations")
			return blaslt.StatusInvalidValue
		}
	}
	// Decode op(A) as M×K and op(B)ᵀ as N×K rows so the inner loop is a
	// contiguous dot product.
	opA := make([]float64, dm.m*dm.k)
	opB := make([]float64, dm.n*dm.k)
	for bt := 0; bt < int(dm.c.batch); bt++ {
		oa, ob, oc := int(dm.a.stride)*bt, int(dm.bl.stride)*bt, int(dm.c.stride)*bt
		for i := 0; i < dm.m; i++ {
			for k := 0; k < dm.k; k++ {
				ia := i + k*int(dm.a.ld)
				if d.transA == 1 {
					ia = k + i*int(dm.a.ld)
				}
				opA[i*dm.k+k] = get(ma, dm.a.typ, oa+ia)
			}
		}
		for j := 0; j < dm.n; j++ {
			for k := 0; k < dm.k; k++ {
				ib := k + j*int(dm.bl.ld)
				if d.transB == 1 {
					ib = j + k*int(dm.bl.ld)
				}
				opB[j*dm.k+k] = get(mb, dm.bl.typ, ob+ib)
			}
		}
		for j := 0; j < dm.n; j++ {
			bj := opB[j*dm.k : (j+1)*dm.k]
			for i := 0; i < dm.m; i++ {
				ai := opA[i*dm.k : (i+1)*dm.k]
				var acc float64
				for k, av := range ai {
					acc += av * bj[k]
				}
				ic := oc + i + j*int(dm.c.ld)
				v := al * acc
				if be != 0 {
					v += be * get(md, dm.c.typ, ic)
				}
				if bias != nil {
					v += get(bias, dm.c.typ, i)
				}
				set(md, dm.c.typ, ic, v)
			}
		}
	}
	return blaslt.StatusSuccess
}

func esize(t blaslt.DataType) int {
	if t == blaslt.R32F {
		return 4
	}
	return 2
}

func get(m []byte, t blaslt.DataType, i int) float64 {
	switch t {
	case blaslt.R32F:
		return float64(math.Float32frombits(*(*uint32)(unsafe.Pointer(&m[4*i]))))
	case blaslt.R16F:
		return float64(weights.F16ToF32(*(*uint16)(unsafe.Pointer(&m[2*i]))))
	default:
		return float64(weights.BF16ToF32(*(*uint16)(unsafe.Pointer(&m[2*i]))))
	}
}

func set(m []byte, t blaslt.DataType, i int, v float64) {
	switch t {
	case blaslt.R32F:
		*(*uint32)(unsafe.Pointer(&m[4*i])) = math.Float32bits(float32(v))
	default:
		*(*uint16)(unsafe.Pointer(&m[2*i])) = weights.F32ToBF16(float32(v))
	}
}
