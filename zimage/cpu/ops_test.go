package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Elementwise and layout ops are compared with float64 references at
// rel_l2 ≤ 1e-6 (most are exact); GEMM-based ops at ≤ 1e-5 (float32
// reassociation over K).

func TestElementwise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := New(WithThreads(3))
	const m, d = 37, 129
	xv, yv, sv := randVec(r, m*d), randVec(r, m*d), randVec(r, d)
	x, y := b.FromHost(xv, m, d), b.FromHost(yv, m, d)
	s := b.FromHost(sv, d)
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	cases := []struct {
		name string
		got  compute.Tensor
		f    func(i int) float64
	}{
		{"SiLU", b.SiLU(x), func(i int) float64 { v := float64(xv[i]); return v * sig(v) }},
		{"SwiGLU", b.SwiGLU(x, y), func(i int) float64 { v := float64(xv[i]); return v * sig(v) * float64(yv[i]) }},
		{"Add", b.Add(x, y), func(i int) float64 { return float64(xv[i]) + float64(yv[i]) }},
		{"Scale", b.Scale(x, 0.37, -1.5), func(i int) float64 { return float64(xv[i])*0.37 - 1.5 }},
		{"Modulate", b.Modulate(x, s), func(i int) float64 { return float64(xv[i]) * (1 + float64(sv[i%d])) }},
		{"GatedAdd", b.GatedAdd(x, y, s), func(i int) float64 {
			return float64(xv[i]) + math.Tanh(float64(sv[i%d]))*float64(yv[i])
		}},
		{"GatedAddNil", b.GatedAdd(x, y, nil), func(i int) float64 { return float64(xv[i]) + float64(yv[i]) }},
	}
	for _, c := range cases {
		want := make([]float64, m*d)
		for i := range want {
			want[i] = c.f(i)
		}
		checkClose(t, c.name, host(t, b, c.got), want, 1e-6)
		if sh := c.got.Shape(); sh[0] != m || sh[1] != d {
			t.Errorf("%s: shape %v", c.name, sh)
		}
	}
}

func TestNorms(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := New()
	const m, d = 19, 300
	xv := randVec(r, m*d)
	for i := range xv {
		xv[i] = xv[i]*3 + 2 // non-zero mean
	}
	wv := randVec(r, d)
	x, w := b.FromHost(xv, m, d), b.FromHost(wv, d)

	rms := make([]float64, m*d)
	rmsNoW := make([]float64, m*d)
	ln := make([]float64, m*d)
	for i := range m {
		row := f64(xv[i*d : (i+1)*d])
		var ss, sum float64
		for _, v := range row {
			ss += v * v
			sum += v
		}
		s := 1 / math.Sqrt(ss/d+1e-6)
		mean := sum / d
		var vs float64
		for _, v := range row {
			vs += (v - mean) * (v - mean)
		}
		inv := 1 / math.Sqrt(vs/d+1e-5)
		for j, v := range row {
			rms[i*d+j] = v * s * float64(wv[j])
			rmsNoW[i*d+j] = v * s
			ln[i*d+j] = (v - mean) * inv
		}
	}
	checkClose(t, "RMSNorm", host(t, b, b.RMSNorm(x, w, 1e-6)), rms, 1e-6)
	checkClose(t, "RMSNorm(nil w)", host(t, b, b.RMSNorm(x, nil, 1e-6)), rmsNoW, 1e-6)
	checkClose(t, "LayerNorm", host(t, b, b.LayerNorm(x, 1e-5)), ln, 1e-6)

	// Per-head RMSNorm through a [L·H, dh] view.
	heads := b.Reshape(x, m*3, d/3)
	wh := b.FromHost(wv[:d/3], d/3)
	got := host(t, b, b.RMSNorm(heads, wh, 1e-6))
	for i := range m * 3 {
		row := f64(xv[i*d/3 : (i+1)*d/3])
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(d/3)+1e-6)
		for j, v := range row {
			if w := v * s * float64(wv[j]); math.Abs(float64(got[i*d/3+j])-w) > 1e-5*math.Abs(w)+1e-6 {
				t.Fatalf("per-head RMSNorm [%d,%d] = %v, want %v", i, j, got[i*d/3+j], w)
			}
		}
	}
}

func TestGroupNorm(t *testing.T) {
	for _, c := range []struct{ c, h, w, groups int }{{16, 9, 11, 4}, {8, 45, 47, 2}, {6, 4, 4, 6}} {
		testGroupNorm(t, c.c, c.h, c.w, c.groups)
	}
}

func testGroupNorm(t *testing.T, c, h, w, groups int) {
	r := rand.New(rand.NewPCG(5, uint64(c)))
	b := New()
	xv := randVec(r, c*h*w)
	for i := range xv {
		xv[i] = xv[i]*0.5 + 10 // large mean: checks the two-pass statistics
	}
	wv, bv := randVec(r, c), randVec(r, c)
	got := host(t, b, b.GroupNorm(b.FromHost(xv, c, h, w), b.FromHost(wv, c), b.FromHost(bv, c), groups, 1e-6))
	want := make([]float64, len(xv))
	cg, hw := c/groups, h*w
	for g := range groups {
		vals := f64(xv[g*cg*hw : (g+1)*cg*hw])
		var sum float64
		for _, v := range vals {
			sum += v
		}
		mean := sum / float64(len(vals))
		var vs float64
		for _, v := range vals {
			vs += (v - mean) * (v - mean)
		}
		inv := 1 / math.Sqrt(vs/float64(len(vals))+1e-6)
		for i, v := range vals {
			ch := g*cg + i/hw
			want[g*cg*hw+i] = (v-mean)*inv*float64(wv[ch]) + float64(bv[ch])
		}
	}
	checkClose(t, fmt.Sprintf("GroupNorm [%d,%d,%d]/%d", c, h, w, groups), got, want, 1e-6)
}

func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	b := New()
	const l, heads, dh = 13, 3, 16
	xv := randVec(r, l*heads*dh)
	cv, sv := make([]float32, l*dh/2), make([]float32, l*dh/2)
	for i := range cv {
		a := r.Float64() * 10
		cv[i], sv[i] = float32(math.Cos(a)), float32(math.Sin(a))
	}
	x, cs, sn := b.FromHost(xv, l, heads*dh), b.FromHost(cv, l, dh/2), b.FromHost(sv, l, dh/2)
	for _, inter := range []bool{false, true} {
		want := make([]float64, len(xv))
		for p := range l {
			for h := range heads {
				base := p*heads*dh + h*dh
				for j := range dh / 2 {
					i0, i1 := base+j, base+j+dh/2 // half-split pair
					if inter {
						i0, i1 = base+2*j, base+2*j+1
					}
					co, si := float64(cv[p*dh/2+j]), float64(sv[p*dh/2+j])
					a, c := float64(xv[i0]), float64(xv[i1])
					want[i0] = a*co - c*si
					want[i1] = a*si + c*co
				}
			}
		}
		checkClose(t, fmt.Sprintf("RoPE(interleaved=%v)", inter), host(t, b, b.RoPE(x, cs, sn, heads, inter)), want, 1e-6)
	}
}

func TestLayoutOps(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	b := New()
	xv := randVec(r, 5*7)
	x := b.FromHost(xv, 5, 7)

	tr := host(t, b, b.Transpose(x))
	for i := range 5 {
		for j := range 7 {
			if tr[j*5+i] != xv[i*7+j] {
				t.Fatalf("Transpose[%d,%d]", j, i)
			}
		}
	}
	// A larger transpose crosses tile boundaries.
	big := randVec(r, 70*45)
	bt := host(t, b, b.Transpose(b.FromHost(big, 70, 45)))
	for i := range 70 {
		for j := range 45 {
			if bt[j*70+i] != big[i*45+j] {
				t.Fatalf("Transpose big [%d,%d]", j, i)
			}
		}
	}

	rows := host(t, b, b.Rows(x, 1, 4))
	if !equal(rows, xv[7:28]) {
		t.Errorf("Rows = %v", rows)
	}
	sl := host(t, b, b.Slice(x, 2, 5))
	for i := range 5 {
		if !equal(sl[i*3:i*3+3], xv[i*7+2:i*7+5]) {
			t.Fatalf("Slice row %d", i)
		}
	}
	yv := randVec(r, 2*7)
	cat := b.Concat(x, b.FromHost(yv, 2, 7))
	if got := host(t, b, cat); !equal(got, append(append([]float32{}, xv...), yv...)) || cat.Shape()[0] != 7 {
		t.Errorf("Concat = %v %v", cat.Shape(), got)
	}
	rep := host(t, b, b.Repeat(b.FromHost(yv[:7], 1, 7), 3))
	for i := range 3 {
		if !equal(rep[i*7:i*7+7], yv[:7]) {
			t.Fatalf("Repeat row %d", i)
		}
	}
	up := host(t, b, b.Upsample2x(b.FromHost(xv, 1, 5, 7)))
	for y := range 10 {
		for xx := range 14 {
			if up[y*14+xx] != xv[(y/2)*7+xx/2] {
				t.Fatalf("Upsample2x[%d,%d]", y, xx)
			}
		}
	}
	view := b.Reshape(x, 7, 5)
	if got := host(t, b, view); !equal(got, xv) || view.Shape()[0] != 7 {
		t.Errorf("Reshape")
	}
}

func equal(a, c []float32) bool {
	if len(a) != len(c) {
		return false
	}
	for i := range a {
		if a[i] != c[i] {
			return false
		}
	}
	return true
}

var allDTypes = []weights.DType{weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2}

func TestWeightsEveryDType(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	b := New()
	const m, n, k = 23, 45, 67
	xv, wv, biasv := randVec(r, m*k), randVec(r, n*k), randVec(r, n)
	x := b.FromHost(xv, m, k)
	for _, dt := range allDTypes {
		wt, exact := weightOf(wv, dt, n, k)
		w := b.Weight(wt)
		if w.DType() != dt {
			t.Errorf("%v: DType() = %v", dt, w.DType())
		}
		bt, bexact := weightOf(biasv, dt, n)
		want := make([]float32, m*n)
		gemm.Reference(want, xv, exact, true, bexact, m, n, k)
		checkClose(t, "MatMul "+dt.String(), host(t, b, b.MatMul(x, w, b.Weight(bt))), f64(want), 1e-5)
		// The same weight through its float32 expansion as an activation.
		checkClose(t, "MatMul f32 "+dt.String(), host(t, b, b.MatMul(x, b.FromHost(exact, n, k), b.FromHost(bexact, n))), f64(want), 1e-5)

		// Embedding converts rows, ToHost the whole weight.
		emb := host(t, b, b.Embedding(w, []int{3, 0, 44, 3}))
		for i, id := range []int{3, 0, 44, 3} {
			if !equal(emb[i*k:(i+1)*k], exact[id*k:(id+1)*k]) {
				t.Fatalf("%v: Embedding row %d", dt, i)
			}
		}
		if !equal(host(t, b, w), exact) {
			t.Errorf("%v: ToHost(weight)", dt)
		}
		// A weight as a small operand (pad token through Repeat).
		row := b.Weight(&weights.Tensor{Name: "pad", DType: dt, Shape: []int{1, k}, Data: wt.Data[:k*dt.Size()]})
		if got := host(t, b, b.Repeat(row, 2)); !equal(got[k:], exact[:k]) {
			t.Errorf("%v: Repeat(weight)", dt)
		}
	}
	// MatMul without bias, M = 1 (GEMV).
	wt, exact := weightOf(wv, weights.BF16, n, k)
	want := make([]float32, n)
	gemm.Reference(want, xv[:k], exact, true, nil, 1, n, k)
	checkClose(t, "GEMV", host(t, b, b.MatMul(b.FromHost(xv[:k], 1, k), b.Weight(wt), nil)), f64(want), 1e-5)
}

func TestConv2D(t *testing.T) {
	testConv2D(t)
	// Again with every weight too big for the float32 cache (decoded into a
	// pooled buffer per call).
	saved := cacheLimit
	cacheLimit = 0
	defer func() { cacheLimit = saved }()
	testConv2D(t)
}

func testConv2D(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	b := New()
	type tc struct{ ci, h, w, co, k, pad int }
	for _, c := range []tc{
		{3, 9, 11, 5, 3, 1}, {4, 6, 7, 8, 1, 0}, {2, 5, 5, 3, 3, 0}, {16, 12, 10, 7, 3, 1}, {3, 4, 6, 2, 1, 1},
	} {
		for _, withBias := range []bool{true, false} {
			xv, wv := randVec(r, c.ci*c.h*c.w), randVec(r, c.co*c.ci*c.k*c.k)
			var bv []float32
			var bias compute.Tensor
			if withBias {
				bv = randVec(r, c.co)
				bias = b.FromHost(bv, c.co)
			}
			wt, exact := weightOf(wv, weights.BF16, c.co, c.ci, c.k, c.k)
			want := refConv(xv, exact, bv, c.ci, c.h, c.w, c.co, c.k, c.k, c.pad)
			name := fmt.Sprintf("Conv2D %+v bias=%v", c, withBias)
			got := b.Conv2D(b.FromHost(xv, c.ci, c.h, c.w), b.Weight(wt), bias, c.pad)
			checkClose(t, name, host(t, b, got), want, 1e-5)
			ho, wo := c.h+2*c.pad-c.k+1, c.w+2*c.pad-c.k+1
			if s := got.Shape(); s[0] != c.co || s[1] != ho || s[2] != wo {
				t.Errorf("%s: shape %v", name, s)
			}
			// Tiled im2col: a budget of about two output rows per tile.
			saved := colBudget
			colBudget = 4 * c.ci * c.k * c.k * (c.w + 2*c.pad) * 2
			checkClose(t, name+" tiled", host(t, b, b.Conv2D(b.FromHost(xv, c.ci, c.h, c.w), b.Weight(wt), bias, c.pad)), want, 1e-5)
			colBudget = saved
		}
	}
}

func TestAttention(t *testing.T) {
	type tc struct {
		lq, lk, heads, kvHeads, dh int
		causal                     bool
	}
	cases := []tc{
		{70, 300, 2, 2, 32, false},   // Lk not a multiple of the key block
		{1, 37, 4, 2, 16, false},     // Lq = 1
		{1, 37, 4, 2, 16, true},      // Lq = 1 causal: only key 0
		{130, 130, 4, 4, 24, true},   // causal Lq = Lk across blocks
		{300, 300, 8, 2, 16, true},   // causal GQA (Qwen3-like 4:1)
		{64, 513, 6, 3, 48, false},   // GQA full
		{100, 100, 1, 1, 512, false}, // VAE-like single wide head
		// dh a multiple of 64: the in-place tile kernel on AVX-512.
		{250, 250, 4, 1, 64, true},   // causal GQA, Lq not a multiple of the 6-row tile
		{121, 700, 3, 3, 128, false}, // DiT-like heads, ragged key block
		{1, 5, 2, 1, 128, true},      // single query
		{7, 1, 2, 2, 64, false},      // single key
		{300, 300, 8, 2, 128, true},  // Qwen3-like
		{130, 260, 1, 1, 512, false}, // VAE-like
	}
	for _, c := range cases {
		r := rand.New(rand.NewPCG(uint64(c.lq), uint64(c.lk)))
		b := New()
		qv := randVec(r, c.lq*c.heads*c.dh)
		kv := randVec(r, c.lk*c.kvHeads*c.dh)
		vv := randVec(r, c.lk*c.kvHeads*c.dh)
		scale := 1 / math.Sqrt(float64(c.dh))
		want := refAttention(qv, kv, vv, c.lq, c.lk, c.heads, c.kvHeads, c.dh, float64(float32(scale)), c.causal)
		got := b.Attention(b.FromHost(qv, c.lq, c.heads*c.dh), b.FromHost(kv, c.lk, c.kvHeads*c.dh),
			b.FromHost(vv, c.lk, c.kvHeads*c.dh), c.heads, c.kvHeads, float32(scale), c.causal)
		checkClose(t, fmt.Sprintf("Attention %+v", c), host(t, b, got), want, 1e-6)
	}
}

// TestAttentionMemory checks that fused attention does not allocate anything
// of size Lq·Lk: at L = 2048 with 2 heads a score matrix would be 32 MB.
func TestAttentionMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's own allocations swamp the measurement")
	}
	const l, heads, dh = 2048, 2, 64
	r := rand.New(rand.NewPCG(15, 16))
	b := New(WithPoolBytes(0))
	q := b.FromHost(randVec(r, l*heads*dh), l, heads*dh)
	k := b.FromHost(randVec(r, l*heads*dh), l, heads*dh)
	v := b.FromHost(randVec(r, l*heads*dh), l, heads*dh)
	b.Free(b.Attention(q, k, v, heads, heads, 0.125, false)) // warm the scratch pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out := b.Attention(q, k, v, heads, heads, 0.125, false)
	runtime.ReadMemStats(&after)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	io := uint64(4 * l * heads * dh) // one [L, heads·dh] tensor
	t.Logf("attention L=%d: %d bytes allocated (%.1f× one q-sized tensor)", l, alloc, float64(alloc)/float64(io))
	if limit := 3*io + 4<<20; alloc > limit {
		t.Errorf("attention allocated %d bytes, want ≤ %d (a score matrix would be %d)", alloc, limit, 4*l*l*heads)
	}
	b.Free(out)
}

func TestShapeErrorsAreSticky(t *testing.T) {
	b := New()
	x := b.FromHost(make([]float32, 6), 2, 3)
	y := b.FromHost(make([]float32, 8), 2, 4)
	w := b.FromHost(make([]float32, 12), 4, 3)
	v := b.FromHost(make([]float32, 3), 3)
	bad := []struct {
		name string
		f    func() compute.Tensor
	}{
		{"Add", func() compute.Tensor { return b.Add(x, y) }},
		{"SwiGLU", func() compute.Tensor { return b.SwiGLU(x, y) }},
		{"MatMul", func() compute.Tensor { return b.MatMul(y, w, nil) }},
		{"MatMulBias", func() compute.Tensor { return b.MatMul(x, w, v) }},
		{"Modulate", func() compute.Tensor { return b.Modulate(y, v) }},
		{"GatedAdd", func() compute.Tensor { return b.GatedAdd(y, y, v) }},
		{"RMSNorm", func() compute.Tensor { return b.RMSNorm(y, v, 1e-6) }},
		{"GroupNorm", func() compute.Tensor { return b.GroupNorm(b.Reshape(y, 2, 2, 2), v, v, 2, 1e-6) }},
		{"RoPE", func() compute.Tensor { return b.RoPE(x, v, v, 1, false) }},
		{"Attention", func() compute.Tensor { return b.Attention(x, y, y, 3, 1, 1, false) }},
		{"AttentionGQA", func() compute.Tensor { return b.Attention(x, x, x, 3, 2, 1, false) }},
		{"Conv2D", func() compute.Tensor { return b.Conv2D(b.Reshape(x, 1, 2, 3), b.Reshape(w, 2, 2, 3, 1), nil, 0) }},
		{"Conv2DTooSmall", func() compute.Tensor {
			return b.Conv2D(b.Reshape(x, 1, 2, 3), b.Reshape(make1(b, 9), 1, 1, 3, 3), nil, 0)
		}},
		{"Upsample2x", func() compute.Tensor { return b.Upsample2x(x) }},
		{"Transpose", func() compute.Tensor { return b.Transpose(v) }},
		{"Rows", func() compute.Tensor { return b.Rows(x, 1, 3) }},
		{"Slice", func() compute.Tensor { return b.Slice(x, 2, 4) }},
		{"Concat", func() compute.Tensor { return b.Concat(x, y) }},
		{"Repeat", func() compute.Tensor { return b.Repeat(x, 2) }},
		{"Reshape", func() compute.Tensor { return b.Reshape(x, 4, 2) }},
		{"FromHost", func() compute.Tensor { return b.FromHost(make([]float32, 5), 2, 3) }},
		{"Embedding", func() compute.Tensor { return b.Embedding(x, []int{2}) }},
		{"Nil", func() compute.Tensor { return b.Add(x, nil) }},
	}
	for _, c := range bad {
		b.ResetErr()
		out := c.f()
		err := b.Err()
		if err == nil {
			t.Errorf("%s: no error recorded", c.name)
			continue
		}
		var se *compute.ShapeError
		if c.name != "Embedding" && c.name != "Nil" && !errors.As(err, &se) {
			t.Errorf("%s: error %v is not a *compute.ShapeError", c.name, err)
		}
		if out == nil {
			t.Errorf("%s: nil placeholder", c.name)
		}
		// Sticky: a valid op now returns a placeholder and keeps the first error.
		after := b.Add(x, x)
		if b.Err() != err {
			t.Errorf("%s: error replaced by %v", c.name, b.Err())
		}
		if got := b.ToHost(after); len(got) != 6 {
			t.Errorf("%s: placeholder ToHost gave %d values", c.name, len(got))
		}
	}
	b.ResetErr()
	if got := host(t, b, b.Add(x, x)); len(got) != 6 {
		t.Fatal("ResetErr did not restore the backend")
	}
}

func make1(b *Backend, n int) compute.Tensor { return b.FromHost(make([]float32, n), n) }

func TestFreeAndViews(t *testing.T) {
	b := New()
	x := b.FromHost([]float32{1, 2, 3, 4}, 2, 2)
	view := b.Reshape(x, 4)
	b.Free(view) // a view's Free is a no-op
	if got := host(t, b, x); got[3] != 4 {
		t.Fatal("Free(view) released the source")
	}
	b.Free(x)
	b.Free(x) // double Free is harmless
	b.ToHost(view)
	if b.Err() == nil {
		t.Fatal("use of a view of a freed tensor was not reported")
	}
	b.ResetErr()
	// The freed buffer is reused for the next tensor of its size.
	y := b.FromHost([]float32{5, 6, 7, 8}, 4)
	if got := host(t, b, y); got[0] != 5 {
		t.Fatal(got)
	}
	// Foreign tensors are rejected.
	b.Add(fakeTensor{}, y)
	if b.Err() == nil {
		t.Fatal("foreign tensor accepted")
	}
}

type fakeTensor struct{}

func (fakeTensor) Shape() []int         { return []int{4} }
func (fakeTensor) DType() weights.DType { return weights.F32 }

func TestWeightValidation(t *testing.T) {
	b := New()
	b.Weight(&weights.Tensor{Name: "short", DType: weights.BF16, Shape: []int{2, 3}, Data: make([]byte, 10)})
	if err := b.Err(); err == nil {
		t.Fatal("short weight data accepted")
	}
	b.ResetErr()
	b.Weight(&weights.Tensor{Name: "ids", DType: weights.I64, Shape: []int{2}, Data: make([]byte, 16)})
	if err := b.Err(); err == nil {
		t.Fatal("I64 weight accepted")
	}
	b.ResetErr()
	// Unaligned F32 bytes still read correctly.
	raw, _ := weightOf([]float32{1.5, -2, 3.25}, weights.F32, 3)
	buf := append([]byte{0}, raw.Data...)
	raw.Data = buf[1:]
	if got := host(t, b, b.Weight(raw)); !equal(got, []float32{1.5, -2, 3.25}) {
		t.Fatalf("unaligned F32 weight = %v", got)
	}
}
