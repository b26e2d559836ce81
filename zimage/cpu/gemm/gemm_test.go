package gemm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// tol is the accepted error relative to Σ|a·b| (+|bias|) per element: float32
// accumulation in a different order than the float64 reference.
const tol = 1e-5

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// encode stores f32 values as dtype dt and returns the bytes plus the exact
// float32 values they decode to (what the reference must use).
func encode(t *testing.T, vals []float32, dt weights.DType) ([]byte, []float32) {
	t.Helper()
	out := make([]byte, len(vals)*dt.Size())
	dec := make([]float32, len(vals))
	for i, v := range vals {
		switch dt {
		case weights.F32:
			u := math.Float32bits(v)
			out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
			dec[i] = v
		case weights.BF16:
			h := weights.F32ToBF16(v)
			out[2*i], out[2*i+1] = byte(h), byte(h>>8)
			dec[i] = weights.BF16ToF32(h)
		case weights.F16:
			// Random bit patterns in the normal range, then exact decode.
			h := uint16(math.Float32bits(v)>>16)&0x83ff | 0x3800
			out[2*i], out[2*i+1] = byte(h), byte(h>>8)
			dec[i] = weights.F16ToF32(h)
		case weights.F8E4M3:
			b := byte(math.Float32bits(v)>>13) & 0xf7 // avoid NaN (S.1111.111)
			out[i] = b
			dec[i] = weights.F8E4M3ToF32(b)
		case weights.F8E5M2:
			b := byte(math.Float32bits(v)>>13) & 0xbf // exponent < 31: finite
			out[i] = b
			dec[i] = weights.F8E5M2ToF32(b)
		default:
			t.Fatalf("encode: dtype %v", dt)
		}
	}
	return out, dec
}

// check compares got with the float64 reference, scaled per element by
// Σ|a_ip·b_pj| + |bias_j| so cancellation does not inflate the error.
func check(t *testing.T, got, a, b []float32, bT bool, bias []float32, m, n, k int) {
	t.Helper()
	want := make([]float32, m*n)
	Reference(want, a, b, bT, bias, m, n, k)
	absA := make([]float32, len(a))
	for i, v := range a {
		absA[i] = float32(math.Abs(float64(v)))
	}
	absB := make([]float32, len(b))
	for i, v := range b {
		absB[i] = float32(math.Abs(float64(v)))
	}
	var absBias []float32
	if bias != nil {
		absBias = make([]float32, len(bias))
		for i, v := range bias {
			absBias[i] = float32(math.Abs(float64(v)))
		}
	}
	scale := make([]float32, m*n)
	Reference(scale, absA, absB, bT, absBias, m, n, k)
	worst := 0.0
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		s := float64(scale[i])
		if s == 0 {
			if d != 0 {
				t.Fatalf("m=%d n=%d k=%d: C[%d,%d] = %g, want exactly %g", m, n, k, i/n, i%n, got[i], want[i])
			}
			continue
		}
		worst = max(worst, d/s)
	}
	if worst > tol || math.IsNaN(worst) {
		t.Fatalf("m=%d n=%d k=%d: max relative error %.3g > %g", m, n, k, worst, tol)
	}
}

// forEachKernel runs f once per kernel available on this machine.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	for _, kern := range kernels {
		t.Run(kern.name, func(t *testing.T) {
			prev, _ := useKernel(kern.name)
			defer func() { active = prev }()
			f(t)
		})
	}
}

type shape struct{ m, n, k int }

func testShapes(r *rand.Rand, short bool) []shape {
	s := []shape{
		{1, 1, 1}, {1, 1, 0}, {3, 5, 0}, {0, 4, 4}, {4, 0, 4},
		{1, 7, 13}, {1, 64, 100}, {2, 33, 17}, {5, 31, 9},
		{13, 47, 1}, {14, 32, 64}, {28, 64, 31}, {29, 65, 385}, {6, 16, 8},
		{100, 100, 100}, {37, 129, 770},
	}
	nrand := 20
	if short {
		nrand = 6
	}
	for range nrand {
		s = append(s, shape{1 + r.IntN(70), 1 + r.IntN(150), r.IntN(300)})
	}
	return s
}

func TestMatMulBTF32(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, sh := range testShapes(r, testing.Short()) {
			for _, withBias := range []bool{false, true} {
				a := randSlice(r, sh.m*sh.k)
				b := randSlice(r, sh.n*sh.k)
				var bias []float32
				if withBias {
					bias = randSlice(r, sh.n)
				}
				c := randSlice(r, sh.m*sh.n) // garbage: must be overwritten
				if err := MatMulBTF32(c, a, b, bias, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				check(t, c, a, b, true, bias, sh.m, sh.n, sh.k)
			}
		}
	})
}

func TestMatMul(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, sh := range testShapes(r, testing.Short()) {
			a := randSlice(r, sh.m*sh.k)
			b := randSlice(r, sh.n*sh.k)
			c := randSlice(r, sh.m*sh.n)
			if err := MatMul(c, a, b, sh.m, sh.n, sh.k); err != nil {
				t.Fatal(err)
			}
			check(t, c, a, b, false, nil, sh.m, sh.n, sh.k)
		}
	})
}

func TestMatMulBTDTypes(t *testing.T) {
	dts := []weights.DType{weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2}
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, dt := range dts {
			t.Run(dt.String(), func(t *testing.T) {
				for _, sh := range testShapes(r, true) {
					a := randSlice(r, sh.m*sh.k)
					raw, b := encode(t, randSlice(r, sh.n*sh.k), dt)
					var bias []float32
					if sh.m%2 == 0 {
						bias = randSlice(r, sh.n)
					}
					c := randSlice(r, sh.m*sh.n)
					if err := MatMulBT(c, a, raw, dt, bias, sh.m, sh.n, sh.k); err != nil {
						t.Fatal(err)
					}
					check(t, c, a, b, true, bias, sh.m, sh.n, sh.k)
				}
			})
		}
	})
}

// TestBlocking shrinks the cache blocks so that small problems exercise
// several k, m and n blocks (accumulation across k blocks, edge blocks).
func TestBlocking(t *testing.T) {
	keepBlocking(t)
	kcMax, mcMax, ncMax, inlineFlops = 40, 50, 70, 0
	SetThreads(3)
	defer SetThreads(0)
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, sh := range []shape{{97, 211, 130}, {64, 64, 80}, {120, 300, 41}, {1, 300, 200}, {5, 300, 200}, {16, 130, 100}, {3, 64, 90}, {300, 64, 50}, {77, 1, 33}} {
			a := randSlice(r, sh.m*sh.k)
			raw, b := encode(t, randSlice(r, sh.n*sh.k), weights.BF16)
			bias := randSlice(r, sh.n)
			c := randSlice(r, sh.m*sh.n)
			if err := MatMulBT(c, a, raw, weights.BF16, bias, sh.m, sh.n, sh.k); err != nil {
				t.Fatal(err)
			}
			check(t, c, a, b, true, bias, sh.m, sh.n, sh.k)
			// The same B read as [k,n] (in place for small m).
			if err := MatMul(c, a, b, sh.m, sh.n, sh.k); err != nil {
				t.Fatal(err)
			}
			check(t, c, a, b, false, nil, sh.m, sh.n, sh.k)
		}
	})
}

func TestErrors(t *testing.T) {
	c, a := make([]float32, 6), make([]float32, 6)
	b := make([]byte, 6*2)
	cases := []struct {
		name string
		err  error
		f    func() error
	}{
		{"negative", ErrShape, func() error { return MatMulBT(c, a, b, weights.BF16, nil, -1, 2, 3) }},
		{"short C", ErrShape, func() error { return MatMulBT(c[:5], a, b, weights.BF16, nil, 2, 3, 3) }},
		{"short A", ErrShape, func() error { return MatMulBT(c, a[:5], b, weights.BF16, nil, 2, 3, 3) }},
		{"short B", ErrShape, func() error { return MatMulBT(c, a, b[:11], weights.BF16, nil, 2, 3, 3) }},
		{"short bias", ErrShape, func() error { return MatMulBT(c, a, b, weights.BF16, []float32{1}, 2, 3, 3) }},
		{"dtype", ErrDType, func() error { return MatMulBT(c, a, b, weights.I16, nil, 2, 3, 3) }},
		{"overflow", ErrShape, func() error { return MatMulBT(c, a, b, weights.BF16, nil, math.MaxInt/2, math.MaxInt/2, 3) }},
		{"f32 short B", ErrShape, func() error { return MatMulBTF32(c, a, a[:5], nil, 2, 3, 3) }},
		{"matmul short B", ErrShape, func() error { return MatMul(c, a, a[:5], 2, 3, 3) }},
	}
	for _, tc := range cases {
		if err := tc.f(); !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestConcurrentCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const m, n, k = 70, 90, 110
	a := randSlice(r, m*k)
	b := randSlice(r, n*k)
	want := make([]float32, m*n)
	Reference(want, a, b, true, nil, m, n, k)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			c := make([]float32, m*n)
			if err := MatMulBTF32(c, a, b, nil, m, n, k); err != nil {
				errs <- err
				return
			}
			for i := range c {
				if d := math.Abs(float64(c[i] - want[i])); d > 1e-3 {
					errs <- fmt.Errorf("goroutine %d: C[%d] = %g, want %g", g, i, c[i], want[i])
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestPackPaths runs every dtype with the assembly transposing pack on and
// off (where it exists), on shapes with whole and ragged 16×16 tiles.
func TestPackPaths(t *testing.T) {
	dts := []weights.DType{weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2}
	defer func(v bool) { useTranspose = v }(useTranspose)
	for _, tr := range []bool{false, useTranspose} {
		useTranspose = tr
		r := rand.New(rand.NewPCG(11, 12))
		for _, dt := range dts {
			for _, sh := range []shape{{20, 64, 64}, {15, 47, 33}, {3, 100, 400}, {33, 17, 16}} {
				a := randSlice(r, sh.m*sh.k)
				raw, b := encode(t, randSlice(r, sh.n*sh.k), dt)
				c := make([]float32, sh.m*sh.n)
				if err := MatMulBT(c, a, raw, dt, nil, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				check(t, c, a, b, true, nil, sh.m, sh.n, sh.k)
				if dt == weights.F32 {
					if err := MatMulBTF32(c, a, b, nil, sh.m, sh.n, sh.k); err != nil {
						t.Fatal(err)
					}
					check(t, c, a, b, true, nil, sh.m, sh.n, sh.k)
				}
			}
		}
	}
}

// FuzzMatMulBT feeds arbitrary sizes, buffer lengths and dtypes: every call
// must either return an error or match the reference, never panic.
func FuzzMatMulBT(f *testing.F) {
	f.Add(3, 5, 7, 0, 0, 0, uint8(weights.BF16), true)
	f.Add(1, 70, 33, 0, -1, 0, uint8(weights.F32), false)
	f.Add(-1, 2, 2, 0, 0, 0, uint8(weights.F16), false)
	f.Add(9, 65, 17, 1, 0, -3, uint8(weights.F8E4M3), true)
	f.Fuzz(func(t *testing.T, m, n, k, dc, da, db int, dtRaw uint8, withBias bool) {
		if m > 40 || n > 140 || k > 80 || m < -2 || n < -2 || k < -2 {
			return
		}
		dt := weights.DType(dtRaw)
		size := max(dt.Size(), 1)
		lenOf := func(want, delta int) int { return max(0, want+delta%4) }
		c := make([]float32, lenOf(max(m*n, 0), dc))
		a := make([]float32, lenOf(max(m*k, 0), da))
		for i := range a {
			a[i] = float32(i%13) - 6
		}
		raw := make([]byte, lenOf(max(n*k, 0)*size, db))
		for i := range raw {
			raw[i] = byte(i*37) & 0x3f // small finite values in every dtype
		}
		var bias []float32
		if withBias {
			bias = make([]float32, max(n, 0))
		}
		err := MatMulBT(c, a, raw, dt, bias, m, n, k)
		if err != nil {
			return
		}
		if m*n == 0 {
			return
		}
		b := make([]float32, n*k)
		src := newBSource(raw, dt, n, k)
		for j := 0; j < n; j++ {
			for p := 0; p < k; p++ {
				b[j*k+p] = bAt(&src, j, p)
			}
		}
		check(t, c, a, b, true, bias, m, n, k)
	})
}

// TestGEMVLongK covers the unpacked small-m path with k spanning several
// chunks, ragged row groups and every dtype.
func TestGEMVLongK(t *testing.T) {
	dts := []weights.DType{weights.F32, weights.BF16, weights.F16, weights.F8E4M3, weights.F8E5M2}
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, dt := range dts {
			for _, sh := range []shape{{1, 9, 2*gemvChunk + 37}, {3, 6, gemvChunk}, {gemvMaxM, 5, gemvChunk + 1}} {
				a := randSlice(r, sh.m*sh.k)
				raw, b := encode(t, randSlice(r, sh.n*sh.k), dt)
				bias := randSlice(r, sh.n)
				c := randSlice(r, sh.m*sh.n)
				if err := MatMulBT(c, a, raw, dt, bias, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				check(t, c, a, b, true, bias, sh.m, sh.n, sh.k)
			}
		}
	})
}

// keepBlocking restores the cache blocking and the inline bound, which the
// test may change, when it ends.
func keepBlocking(t testing.TB) {
	k, m, n, f := kcMax, mcMax, ncMax, inlineFlops
	t.Cleanup(func() { kcMax, mcMax, ncMax, inlineFlops = k, m, n, f })
}
