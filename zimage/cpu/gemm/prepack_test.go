package gemm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// sameBits fails unless got and want hold the same float32 bits.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v, MatMulBTBF16Ctx gives %v", what, i, got[i], want[i])
		}
	}
}

// prepackShapes are ragged shapes for the packed products: n not a
// multiple of the kernel's nr, odd k, k over kcMax (several k blocks), m
// over mcMax, m below mr and m = 1..9 around gemvMaxM.
func prepackShapes(r *rand.Rand) []shape {
	s := []shape{{9, 64, 2}, {12, 130, 33}, {70, 200, 1025}, {33, 65, 2100}, {40, 1, 7}, {25, 129, 1}}
	for m := 1; m <= 9; m++ {
		s = append(s, shape{m, 70 + m, 31 + 2*m})
	}
	for range 6 {
		s = append(s, shape{1 + r.IntN(80), 1 + r.IntN(200), 1 + r.IntN(400)})
	}
	return s
}

// TestMatMulBTBF16Packed checks that products on a pre-packed weight, alone
// and several at once, equal MatMulBTBF16Ctx bit for bit: every bf16 kernel
// of this machine, every B dtype, with and without bias, with the default
// blocking and with a small one (many k and m blocks), and with the GEMV
// off (narrow kernels for m < mr).
func TestMatMulBTBF16Packed(t *testing.T) {
	forEachBF16Kernel(t, func(t *testing.T) {
		for _, mode := range []string{"default", "small-blocks", "no-gemv"} {
			t.Run(mode, func(t *testing.T) {
				defer func(kc, mc, gm int) { kcMax, mcMax, gemvMaxM = kc, mc, gm }(kcMax, mcMax, gemvMaxM)
				switch mode {
				case "small-blocks":
					kcMax, mcMax = 64, 24
				case "no-gemv":
					gemvMaxM = 0
				}
				r := rand.New(rand.NewPCG(11, 12))
				for _, sh := range prepackShapes(r) {
					for _, dt := range []weights.DType{weights.BF16, weights.F32, weights.F16, weights.F8E4M3} {
						checkPacked(t, r, sh, dt)
					}
				}
			})
		}
	})
}

func checkPacked(t *testing.T, r *rand.Rand, sh shape, dt weights.DType) {
	t.Helper()
	ctx := context.Background()
	a := randSlice(r, sh.m*sh.k)
	// Three weights of the same k, the second narrower (ragged panels in
	// the middle of the shared task list).
	ns := []int{sh.n, max(1, sh.n/3), sh.n + 5}
	var ps, raws []*BF16Packed
	var cs, want, biases [][]float32
	for i, n := range ns {
		raw, _ := encode(t, randSlice(r, n*sh.k), dt)
		var bias []float32
		if i != 1 {
			bias = randSlice(r, n)
		}
		w := make([]float32, sh.m*n)
		if err := MatMulBTBF16Ctx(ctx, w, a, raw, dt, bias, sh.m, n, sh.k); err != nil {
			t.Fatal(err)
		}
		p, err := PackBF16(raw, dt, n, sh.k)
		if err != nil {
			t.Fatal(err)
		}
		if p.N() != n || p.K() != sh.k || p.Bytes() != PackedBF16Bytes(n, sh.k) {
			t.Fatalf("pack of %d×%d: N %d K %d Bytes %d (PackedBF16Bytes %d)", n, sh.k, p.N(), p.K(), p.Bytes(), PackedBF16Bytes(n, sh.k))
		}
		got := make([]float32, sh.m*n)
		if err := MatMulBTBF16PackedCtx(ctx, got, a, p, bias, sh.m, n, sh.k); err != nil {
			t.Fatal(err)
		}
		sameBits(t, "packed "+dt.String(), got, w)
		rp, err := RawBF16(raw, dt, n, sh.k)
		if err != nil {
			t.Fatal(err)
		}
		if rp.Bytes() != 0 {
			t.Fatalf("RawBF16 holds %d bytes", rp.Bytes())
		}
		ps, raws, want, biases = append(ps, p), append(raws, rp), append(want, w), append(biases, bias)
		cs = append(cs, make([]float32, sh.m*n))
	}
	// All packed, all raw (packed per task), and mixed.
	mixed := []*BF16Packed{raws[0], ps[1], raws[2]}
	for _, c := range []struct {
		name string
		ws   []*BF16Packed
	}{{"multi", ps}, {"multi raw", raws}, {"multi mixed", mixed}} {
		for i := range cs {
			clear(cs[i])
		}
		if err := MatMulBTBF16MultiCtx(ctx, cs, a, c.ws, biases, sh.m, sh.k, ns...); err != nil {
			t.Fatal(err)
		}
		for i := range ns {
			sameBits(t, c.name+" "+dt.String(), cs[i], want[i])
		}
	}
}

// TestMatMulBTBF16PackedKernelChange checks that a pack made for another
// kernel is not used with the current one (the product falls back to the
// original bytes and stays right).
func TestMatMulBTBF16PackedKernelChange(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	m, n, k := 20, 70, 90
	a := randSlice(r, m*k)
	raw, _ := encode(t, randSlice(r, n*k), weights.BF16)
	prev := bf16Kernel
	defer func() { bf16Kernel = prev }()
	bf16Kernel = roundingKernel(genericKernel)
	p, err := PackBF16(raw, weights.BF16, n, k)
	if err != nil {
		t.Fatal(err)
	}
	bf16Kernel = prev
	got, want := make([]float32, m*n), make([]float32, m*n)
	if err := MatMulBTBF16PackedCtx(context.Background(), got, a, p, nil, m, n, k); err != nil {
		t.Fatal(err)
	}
	if err := MatMulBTBF16Ctx(context.Background(), want, a, raw, weights.BF16, nil, m, n, k); err != nil {
		t.Fatal(err)
	}
	sameBits(t, "after a kernel change", got, want)
}

// TestMatMulBTBF16PackedBlockingChange checks that a pack made under
// another k blocking falls back to the original bytes.
func TestMatMulBTBF16PackedBlockingChange(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	m, n, k := 20, 70, 300
	a := randSlice(r, m*k)
	raw, _ := encode(t, randSlice(r, n*k), weights.BF16)
	defer func(v int) { kcMax = v }(kcMax)
	kcMax = 64
	p, err := PackBF16(raw, weights.BF16, n, k)
	if err != nil {
		t.Fatal(err)
	}
	for _, kc := range []int{64, 1024} {
		kcMax = kc
		got, want := make([]float32, m*n), make([]float32, m*n)
		if err := MatMulBTBF16MultiCtx(context.Background(), [][]float32{got}, a, []*BF16Packed{p}, nil, m, k); err != nil {
			t.Fatal(err)
		}
		if err := MatMulBTBF16Ctx(context.Background(), want, a, raw, weights.BF16, nil, m, n, k); err != nil {
			t.Fatal(err)
		}
		sameBits(t, fmt.Sprintf("kcMax %d", kc), got, want)
	}
}

// TestPackBF16Errors checks the typed errors of bad arguments.
func TestPackBF16Errors(t *testing.T) {
	ctx := context.Background()
	if _, err := PackBF16(make([]byte, 10), weights.BF16, 3, 4); !errors.Is(err, ErrShape) {
		t.Errorf("short B: %v, want ErrShape", err)
	}
	if _, err := PackBF16(make([]byte, 100), weights.Q8_0, 1, 32); !errors.Is(err, ErrDType) {
		t.Errorf("Q8_0: %v, want ErrDType", err)
	}
	if _, err := PackBF16(nil, weights.BF16, -1, 4); !errors.Is(err, ErrShape) {
		t.Errorf("negative n: %v, want ErrShape", err)
	}
	if _, err := RawBF16(make([]byte, 10), weights.BF16, 3, 4); !errors.Is(err, ErrShape) {
		t.Errorf("RawBF16, short B: %v, want ErrShape", err)
	}
	if _, err := RawBF16(make([]byte, 100), weights.Q4_K, 1, 32); !errors.Is(err, ErrDType) {
		t.Errorf("RawBF16, Q4_K: %v, want ErrDType", err)
	}
	if _, err := RawBF16(nil, weights.BF16, 3, -4); !errors.Is(err, ErrShape) {
		t.Errorf("RawBF16, negative k: %v, want ErrShape", err)
	}
	p, err := PackBF16(make([]byte, 2*3*4), weights.BF16, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	c, a := make([]float32, 30), make([]float32, 40)
	cases := map[string]error{
		"k mismatch": MatMulBTBF16PackedCtx(ctx, c, a, p, nil, 10, 3, 3),
		"n mismatch": MatMulBTBF16PackedCtx(ctx, c, a, p, nil, 10, 2, 4),
		"short C":    MatMulBTBF16PackedCtx(ctx, c[:29], a, p, nil, 10, 3, 4),
		"short A":    MatMulBTBF16PackedCtx(ctx, c, a[:39], p, nil, 10, 3, 4),
		"short bias": MatMulBTBF16PackedCtx(ctx, c, a, p, []float32{1}, 10, 3, 4),
		"nil pack":   MatMulBTBF16PackedCtx(ctx, c, a, nil, nil, 10, 3, 4),
		"counts":     MatMulBTBF16MultiCtx(ctx, [][]float32{c, c}, a, []*BF16Packed{p}, nil, 10, 4),
	}
	for name, err := range cases {
		if !errors.Is(err, ErrShape) {
			t.Errorf("%s: %v, want ErrShape", name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := MatMulBTBF16PackedCtx(cctx, c, a, p, nil, 10, 3, 4); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
