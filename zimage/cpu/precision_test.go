package cpu

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

func roundedBF16(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = math.Float32frombits(bf16Bits(x) << 16)
	}
	return out
}

// TestAttentionBF16 checks bf16 attention against the float64 reference of
// the bf16-rounded q·scale, k and v: what remains is the rounding of the
// probabilities (2⁻⁹ relative) and float32 accumulation. Head widths the
// VDPBF16PS tiles do not take run the float32 engine and must match it.
func TestAttentionBF16(t *testing.T) {
	if !hasBF16Dot {
		t.Skip("CPU lacks AVX512-BF16: bf16 attention runs the float32 engine (TestAttention covers it)")
	}
	cases := []struct {
		lq, lk, heads, kvHeads, dh int
		causal                     bool
	}{
		{250, 250, 4, 1, 64, true},
		{121, 701, 3, 3, 128, false}, // odd Lk: a half-filled last key pair
		{1, 5, 2, 1, 128, true},
		{7, 1, 2, 2, 64, false},
		{300, 300, 8, 2, 128, true},
		{130, 257, 1, 1, 512, false},
		{70, 300, 2, 2, 32, false},   // not a multiple of 64: float32 engine
		{50, 270, 12, 12, 64, false}, // keys converted in head groups of 8 and 4
		{64, 320, 2, 2, 128, false},  // one key block of 320
		{40, 513, 2, 1, 128, true},   // two blocks of 320 (the last 193 keys)
		{30, 1088, 1, 1, 64, false},  // three blocks of 384
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%d_h%d_kv%d_dh%d_causal%v", c.lq, c.lk, c.heads, c.kvHeads, c.dh, c.causal), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.lq), uint64(c.lk)+7))
			b := New(WithBF16(true))
			qv := randVec(r, c.lq*c.heads*c.dh)
			kv := randVec(r, c.lk*c.kvHeads*c.dh)
			vv := randVec(r, c.lk*c.kvHeads*c.dh)
			scale := float32(1 / math.Sqrt(float64(c.dh)))
			got := host(t, b, b.Attention(b.FromHost(qv, c.lq, c.heads*c.dh), b.FromHost(kv, c.lk, c.kvHeads*c.dh),
				b.FromHost(vv, c.lk, c.kvHeads*c.dh), c.heads, c.kvHeads, scale, c.causal))
			if !fastAttentionBF16(c.dh) {
				want := refAttention(qv, kv, vv, c.lq, c.lk, c.heads, c.kvHeads, c.dh, float64(scale), c.causal)
				checkClose(t, "attention (float32 engine)", got, want, 1e-5)
				return
			}
			qs := make([]float32, len(qv))
			for i, x := range qv {
				qs[i] = x * scale
			}
			want := refAttention(roundedBF16(qs), roundedBF16(kv), roundedBF16(vv), c.lq, c.lk, c.heads, c.kvHeads, c.dh, 1, c.causal)
			checkClose(t, "attention bf16", got, want, 4e-3)
			exact := refAttention(qv, kv, vv, c.lq, c.lk, c.heads, c.kvHeads, c.dh, float64(scale), c.causal)
			t.Logf("rel_l2 vs rounded-input reference %.2g, vs exact %.2g", relL2(got, want), relL2(got, exact))
		})
	}
}

// TestTransposeKeysBF16 checks the bf16 key layout against its definition:
// block b of head g holds word(c, j) = bf16 pair (key b·kb+j)[2c, 2c+1],
// zero from the last key to the block's last 64-key tile.
func TestTransposeKeysBF16(t *testing.T) {
	for _, c := range []struct{ l, h, dh int }{{320, 8, 128}, {1088, 3, 64}, {37, 9, 64}, {513, 1, 256}} {
		kb := keyBlockBF16(c.l, c.dh)
		nkb := (c.l + kb - 1) / kb
		if kb%64 != 0 || kb > attnBkMaxBF16 || (c.dh > 128 && kb > attnBk) || (nkb-1)*kb >= c.l {
			t.Fatalf("l=%d: key block %d (%d blocks)", c.l, kb, nkb)
		}
		r := rand.New(rand.NewPCG(uint64(c.l), 3))
		k := randVec(r, c.l*c.h*c.dh)
		dq, ld := c.dh/2, kb+16
		got := make([]uint32, c.h*nkb*dq*ld)
		for i := range got {
			got[i] = 0xdeadbeef // the pool's memory is not cleared
		}
		var stop atomic.Bool
		transposeKeysBF16(2, &stop, got, k, c.l, c.h, c.dh, kb, nkb)
		for g := range c.h {
			for b := range nkb {
				bk := min(kb, c.l-b*kb)
				for cc := range dq {
					row := got[((g*nkb+b)*dq+cc)*ld:]
					for j := range (bk + 63) / 64 * 64 {
						var want uint32
						if j < bk {
							key := k[((b*kb+j)*c.h+g)*c.dh:]
							want = pair(key[2*cc], key[2*cc+1])
						}
						if row[j] != want {
							t.Fatalf("l=%d h=%d dh=%d: head %d block %d word (%d, %d) = %#x, want %#x", c.l, c.h, c.dh, g, b, cc, j, row[j], want)
						}
					}
				}
			}
		}
	}
}

// TestMatMulBF16Backend checks that WithBF16 routes MatMul through the bf16
// GEMM (rounded activations) for both weight and activation right operands.
func TestMatMulBF16Backend(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const m, k, n = 37, 70, 45
	x := randVec(r, m*k)
	wv := randVec(r, n*k)
	b := New(WithBF16(true))
	if !b.BF16() {
		t.Fatal("BF16() = false")
	}
	wt, dec := weightOf(wv, weights.BF16, n, k)
	for _, tc := range []struct {
		name string
		w    []float32
		got  []float32
	}{
		{"bf16 weight", dec, host(t, b, b.MatMul(b.FromHost(x, m, k), b.Weight(wt), nil))},
		{"activation", roundedBF16(wv), host(t, b, b.MatMul(b.FromHost(x, m, k), b.FromHost(wv, n, k), nil))},
	} {
		xr := roundedBF16(x)
		want := make([]float64, m*n)
		for i := range m {
			for j := range n {
				var s float64
				for p := range k {
					s += float64(xr[i*k+p]) * float64(tc.w[j*k+p])
				}
				want[i*n+j] = s
			}
		}
		checkClose(t, tc.name, tc.got, want, 1e-6)
	}
}

// TestConv2DBF16 checks WithBF16 convolutions (bf16 GEMMs over im2col, and
// the 1×1 GEMM) against the float64 reference of the rounded operands,
// including a tiled case.
func TestConv2DBF16(t *testing.T) {
	saved := colBudget
	defer func() { colBudget = saved }()
	r := rand.New(rand.NewPCG(21, 22))
	b := New(WithBF16(true))
	for _, c := range []struct{ ci, h, w, co, k, pad, budget int }{
		{16, 12, 10, 9, 3, 1, 64 << 20}, {12, 9, 7, 20, 1, 0, 64 << 20}, {24, 20, 18, 13, 3, 1, 4096}, {5, 6, 6, 10, 3, 0, 64 << 20},
	} {
		colBudget = c.budget
		xv, wv := randVec(r, c.ci*c.h*c.w), randVec(r, c.co*c.ci*c.k*c.k)
		bv := randVec(r, c.co)
		wt, exact := weightOf(wv, weights.BF16, c.co, c.ci, c.k, c.k)
		xr := roundedBF16(xv)
		if c.co <= 8 { // the float32 small-m path
			xr = xv
		}
		want := refConv(xr, exact, bv, c.ci, c.h, c.w, c.co, c.k, c.k, c.pad)
		got := b.Conv2D(b.FromHost(xv, c.ci, c.h, c.w), b.Weight(wt), b.FromHost(bv, c.co), c.pad)
		checkClose(t, fmt.Sprintf("Conv2D bf16 %+v", c), host(t, b, got), want, 1e-6)
	}
}

// TestMatMulQ80Backend checks the backend's Q8_0 product against the gemm
// reference path (bit-identical) and its shape errors.
func TestMatMulQ80Backend(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	const m, k, n = 13, 64, 50
	x := randVec(r, m*k)
	w := make([]byte, n*(k/32)*34)
	for i := range w {
		w[i] = byte(r.IntN(256))
	}
	for blk := 0; blk < n*k/32; blk++ { // finite scales
		w[blk*34], w[blk*34+1] = 0x00, 0x20
	}
	bias := randVec(r, n)
	b := New()
	got := host(t, b, b.MatMulQ80(b.FromHost(x, m, k), w, n, b.FromHost(bias, n)))
	want := make([]float32, m*n)
	if err := gemm.MatMulBTQ80(want, x, w, bias, m, n, k); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("[%d] = %g, want %g", i, got[i], want[i])
		}
	}
	pw, err := gemm.PackQ80(w, n, k)
	if err != nil {
		t.Fatal(err)
	}
	gotP := host(t, b, b.MatMulQ80Packed(b.FromHost(x, m, k), pw, b.FromHost(bias, n)))
	for i := range want {
		if gotP[i] != want[i] {
			t.Fatalf("packed: [%d] = %g, want %g", i, gotP[i], want[i])
		}
	}
	b.MatMulQ80(b.FromHost(x, m, k), w[:10], n, nil)
	if b.Err() == nil {
		t.Fatal("short Q8_0 weight: no error")
	}
}

// TestToBF16Pairs checks the VCVTNE2PS2BF16 conversion against the Go
// rounding (normal values; the instruction reads denormals as zero).
func TestToBF16Pairs(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	for _, n := range []int{0, 1, 63, 64, 65, 128, 257} {
		src := randVec(r, n)
		got, want := make([]uint32, (n+1)/2), make([]uint32, (n+1)/2)
		toBF16Pairs(got, src)
		toBF16PairsGo(want, src)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d: word %d = %#08x, want %#08x", n, i, got[i], want[i])
			}
		}
	}
}

// TestMatMulQ80Weight: with WithBF16 a Q8_0 weight (GGUF) goes through the
// VPDPBUSD GEMM (bit-identical to gemm.MatMulBTQ80) from
// gemm.Q80UnpackedMinRows rows on, through the bf16 kernel on its
// dequantized blocks below that; in float32 mode, and for m ≤ 8, it keeps
// the exact dequantizing path.
func TestMatMulQ80Weight(t *testing.T) {
	if !gemm.HasQ8Dot() {
		t.Skip("CPU lacks AVX512-VNNI: Q8_0 weights keep the dequantizing path in every mode")
	}
	r := rand.New(rand.NewPCG(71, 72))
	const k, n = 96, 40
	wv := randVec(r, n*k)
	raw := make([]byte, n*(k/32)*34)
	if err := weights.Quantize(raw, wv, weights.Q8_0); err != nil {
		t.Fatal(err)
	}
	wt := &weights.Tensor{Name: "w", DType: weights.Q8_0, Shape: []int{n, k}, Data: raw}
	for _, m := range []int{3, 21, gemm.Q80UnpackedMinRows + 5} {
		x := randVec(r, m*k)
		want := make([]float32, m*n)
		switch {
		case m >= gemm.Q80UnpackedMinRows:
			if err := gemm.MatMulBTQ80(want, x, raw, nil, m, n, k); err != nil {
				t.Fatal(err)
			}
		case m > 8: // unpacked and few rows: the bf16 kernel on the dequantized blocks
			if err := gemm.MatMulBTQuantBF16Ctx(context.Background(), want, x, raw, weights.Q8_0, nil, m, n, k); err != nil {
				t.Fatal(err)
			}
		default:
			if err := gemm.MatMulBTQuant(want, x, raw, weights.Q8_0, nil, m, n, k); err != nil {
				t.Fatal(err)
			}
		}
		exact := make([]float32, m*n)
		if err := gemm.MatMulBTQuant(exact, x, raw, weights.Q8_0, nil, m, n, k); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			bf16 bool
			want []float32
		}{{true, want}, {false, exact}} {
			b := New(WithBF16(tc.bf16))
			got := host(t, b, b.MatMul(b.FromHost(x, m, k), b.Weight(wt), nil))
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("m=%d bf16=%v: [%d] = %g, want %g", m, tc.bf16, i, got[i], tc.want[i])
				}
			}
		}
	}
}

// TestMatMulKQuantWeight: with WithBF16 a Q3_K–Q6_K weight with enough
// rows of x (gemm.KQuantDot) goes through the int8 GEMM (bit-identical to
// gemm.MatMulBTKQuantCtx), and MatMulShared over weights of one K-quant type
// (x quantized once) equals MatMul bit for bit; with fewer rows the bf16
// path stays.
func TestMatMulKQuantWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(73, 74))
	const k = 512
	for _, dt := range []weights.DType{weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K} {
		if !gemm.KQuantDot(dt, 1<<20) {
			t.Skipf("CPU lacks VNNI: %v weights keep the bf16 dequantizing path", dt)
		}
		var wts []*weights.Tensor
		for i, n := range []int{40, 56} {
			raw := make([]byte, n*(k/256)*dt.BlockBytes())
			if err := weights.Quantize(raw, randVec(r, n*k), dt); err != nil {
				t.Fatal(err)
			}
			wts = append(wts, &weights.Tensor{Name: fmt.Sprintf("w%d", i), DType: dt, Shape: []int{n, k}, Data: raw})
		}
		for _, m := range []int{5, 21, 400} {
			x := randVec(r, m*k)
			b := New(WithBF16(true))
			xt := b.FromHost(x, m, k)
			w0, w1 := b.Weight(wts[0]), b.Weight(wts[1])
			shared := b.MatMulShared(xt, w0, w1)
			for i, wt := range wts {
				n := wt.Shape[0]
				want := make([]float32, m*n)
				var err error
				if gemm.KQuantDot(dt, m) {
					err = gemm.MatMulBTKQuantCtx(context.Background(), want, x, wt.Data, dt, nil, m, n, k)
				} else {
					err = gemm.MatMulBTQuantBF16Ctx(context.Background(), want, x, wt.Data, dt, nil, m, n, k)
				}
				if err != nil {
					t.Fatal(err)
				}
				got := host(t, b, b.MatMul(xt, b.Weight(wt), nil))
				sh := host(t, b, shared[i])
				for j := range want {
					if got[j] != want[j] || sh[j] != want[j] {
						t.Fatalf("%v m=%d weight %d: [%d] = %g (shared %g), want %g", dt, m, i, j, got[j], sh[j], want[j])
					}
				}
			}
		}
	}
}
