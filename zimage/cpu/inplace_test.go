package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// sameTensor fails unless got and want hold the same float32 values, bit for
// bit.
func sameTensor(t *testing.T, b *Backend, name string, got, want compute.Tensor) {
	t.Helper()
	g, w := host(t, b, got), host(t, b, want)
	if len(g) != len(w) {
		t.Fatalf("%s: %d values, want %d", name, len(g), len(w))
	}
	for i := range w {
		if g[i] != w[i] && !(g[i] != g[i] && w[i] != w[i]) {
			t.Fatalf("%s: [%d] = %g, want %g", name, i, g[i], w[i])
		}
	}
}

// TestUpsample2xConv2D checks the fused upsampling convolution against
// Upsample2x then Conv2D bit for bit: fp32 (the two ops) and bf16 (read in
// place on VDPBF16PS), Winograd on and off, odd sides, channel counts that
// are not multiples of 16, a GEMV-sized output.
func TestUpsample2xConv2D(t *testing.T) {
	defer gemm.SetWinograd(gemm.SetWinograd(gemm.WinogradAuto))
	r := rand.New(rand.NewPCG(41, 42))
	for _, bf := range []bool{false, true} {
		b := New(WithBF16(bf))
		for _, mode := range []gemm.WinogradMode{gemm.WinogradOff, gemm.WinogradOn} {
			gemm.SetWinograd(mode)
			for _, c := range []struct{ co, ci, h, w, k, pad int }{
				{70, 67, 9, 13, 3, 1}, {33, 20, 16, 17, 3, 1}, {5, 9, 6, 5, 3, 1}, {24, 7, 4, 9, 1, 0}, {17, 3, 5, 7, 3, 0},
			} {
				name := fmt.Sprintf("bf16=%v wino=%d %+v", bf, mode, c)
				x := b.FromHost(randVec(r, c.ci*c.h*c.w), c.ci, c.h, c.w)
				w := b.FromHost(randVec(r, c.co*c.ci*c.k*c.k), c.co, c.ci, c.k, c.k)
				bias := b.FromHost(randVec(r, c.co), c.co)
				u := b.Upsample2x(x)
				want := b.Conv2D(u, w, bias, c.pad)
				got := b.Upsample2xConv2D(x, w, bias, c.pad)
				sameTensor(t, b, name, got, want)
				b.Free(x, w, bias, u, got, want)
			}
		}
		// Shape errors are the sequence's, recorded as usual.
		x := b.FromHost(make([]float32, 12), 3, 2, 2)
		w := b.FromHost(make([]float32, 9*4*9), 9, 4, 3, 3)
		b.Upsample2xConv2D(x, w, nil, 1)
		if b.Err() == nil {
			t.Fatalf("bf16=%v: channel mismatch accepted", bf)
		}
		b.ResetErr()
	}
}

// TestInPlaceOps checks AddInPlace and GroupNormSiLUInPlace against Add and
// GroupNormSiLU bit for bit (ragged sizes, both GroupNorm schedules), that
// they allocate nothing, that the consumed handle reads as freed, and the
// fallbacks for operands that cannot be consumed.
func TestInPlaceOps(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, threads := range []int{1, 3} {
		b := New(WithThreads(threads))
		for _, c := range []struct{ ch, h, w, groups int }{{4, 3, 5, 2}, {32, 8, 8, 8}, {48, 7, 9, 16}, {6, 33, 31, 3}} {
			name := fmt.Sprintf("threads=%d %+v", threads, c)
			n := c.ch * c.h * c.w
			xv, yv := randVec(r, n), randVec(r, n)
			gw, gb := b.FromHost(randVec(r, c.ch), c.ch), b.FromHost(randVec(r, c.ch), c.ch)
			x, y := b.FromHost(xv, c.ch, c.h, c.w), b.FromHost(yv, c.ch, c.h, c.w)
			want := b.Add(x, y)
			live := b.live
			got := b.AddInPlace(x, y)
			if b.live != live {
				t.Fatalf("%s: AddInPlace allocated %d bytes", name, b.live-live)
			}
			sameTensor(t, b, name+" AddInPlace", got, want)
			if b.ToHost(x); b.Err() == nil {
				t.Fatalf("%s: the consumed operand is still usable", name)
			}
			b.ResetErr()
			b.Free(want)

			want = b.GroupNormSiLU(got, gw, gb, c.groups, 1e-6)
			live = b.live
			gn := b.GroupNormSiLUInPlace(got, gw, gb, c.groups, 1e-6)
			if b.live != live {
				t.Fatalf("%s: GroupNormSiLUInPlace allocated %d bytes", name, b.live-live)
			}
			sameTensor(t, b, name+" GroupNormSiLUInPlace", gn, want)
			b.Free(gn, want, y, gw, gb)

			// Not consumable: a view, the same storage twice.
			x = b.FromHost(xv, c.ch, c.h, c.w)
			want = b.Add(x, x)
			got = b.AddInPlace(x, x)
			sameTensor(t, b, name+" AddInPlace(x, x)", got, want)
			b.Free(got, want)
			x = b.FromHost(xv, c.ch, c.h, c.w)
			v := b.Reshape(x, c.ch, c.h*c.w)
			y = b.FromHost(yv, c.ch, c.h*c.w)
			want = b.Add(v, y)
			got = b.AddInPlace(v, y)
			sameTensor(t, b, name+" AddInPlace(view, y)", got, want)
			b.Free(got, want, x, y)
			if err := b.Err(); err != nil {
				t.Fatal(name, err)
			}
		}
		// Errors: a shape mismatch is recorded and the operand freed.
		x, y := b.FromHost(make([]float32, 6), 2, 3), b.FromHost(make([]float32, 4), 2, 2)
		b.AddInPlace(x, y)
		if b.Err() == nil {
			t.Fatal("AddInPlace shape mismatch accepted")
		}
		b.ResetErr()
		if !x.(*Tensor).freed {
			t.Fatal("AddInPlace left its failed operand allocated")
		}
		b.Free(y)
	}
}
