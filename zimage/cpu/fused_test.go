package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/zimage/compute"
)

var _ fused.Ops = (*Backend)(nil)

// plain hides the fused methods, so the fused helpers run the op sequence.
type plain struct{ compute.Backend }

// TestFusedMatchesSequence checks every fused chain against its op sequence
// on random shapes: bit-identical for the RMSNorm chains, within a few ulp
// for GroupNormSiLU (vector vs scalar SiLU on a run's last values).
func TestFusedMatchesSequence(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	b := New()
	seq := plain{b}
	same := func(name string, got, want compute.Tensor, ulps float64) {
		t.Helper()
		g, w := host(t, b, got), host(t, b, want)
		if len(g) != len(w) {
			t.Fatalf("%s: %d values, want %d", name, len(g), len(w))
		}
		for i := range w {
			d := math.Abs(float64(g[i]) - float64(w[i]))
			if d > ulps*math.Abs(float64(w[i]))*0x1p-23 || math.IsNaN(float64(g[i])) {
				t.Fatalf("%s: [%d] = %g, sequence %g", name, i, g[i], w[i])
			}
		}
		b.Free(got, want)
	}
	for _, sh := range [][2]int{{1, 16}, {7, 33}, {64, 96}, {300, 130}} {
		m, d := sh[0], sh[1]
		name := fmt.Sprintf("%dx%d", m, d)
		x := b.FromHost(randVec(r, m*d), m, d)
		y := b.FromHost(randVec(r, m*d), m, d)
		w := b.FromHost(randVec(r, d), d)
		s := b.FromHost(randVec(r, d), d)
		g := b.FromHost(randVec(r, d), d)
		for _, wt := range []compute.Tensor{w, nil} {
			same(name+" RMSNormModulate", b.RMSNormModulate(x, wt, s, 1e-6), fused.RMSNormModulate(seq, x, wt, s, 1e-6), 0)
			same(name+" RMSNormGatedAdd", b.RMSNormGatedAdd(x, y, wt, g, 1e-6), fused.RMSNormGatedAdd(seq, x, y, wt, g, 1e-6), 0)
			same(name+" RMSNormGatedAdd nil gate", b.RMSNormGatedAdd(x, y, wt, nil, 1e-6), fused.RMSNormGatedAdd(seq, x, y, wt, nil, 1e-6), 0)
			s1, n1 := b.AddRMSNorm(x, y, wt, 1e-6)
			s2, n2 := fused.AddRMSNorm(seq, x, y, wt, 1e-6)
			same(name+" AddRMSNorm sum", s1, s2, 0)
			same(name+" AddRMSNorm norm", n1, n2, 0)
		}
		same(name+" RMSNormModulate nil scale", b.RMSNormModulate(x, w, nil, 1e-6), fused.RMSNormModulate(seq, x, w, nil, 1e-6), 0)
	}
	for _, c := range []struct{ l, heads, dh int }{{5, 2, 8}, {37, 3, 64}, {130, 4, 128}} {
		x := b.FromHost(randVec(r, c.l*c.heads*c.dh), c.l, c.heads*c.dh)
		w := b.FromHost(randVec(r, c.dh), c.dh)
		cos := b.FromHost(randVec(r, c.l*c.dh/2), c.l, c.dh/2)
		sin := b.FromHost(randVec(r, c.l*c.dh/2), c.l, c.dh/2)
		for _, il := range []bool{true, false} {
			for _, wt := range []compute.Tensor{w, nil} {
				name := fmt.Sprintf("HeadRMSNormRoPE %+v interleaved=%v gain=%v", c, il, wt != nil)
				same(name, b.HeadRMSNormRoPE(x, wt, cos, sin, c.heads, 1e-5, il), fused.HeadRMSNormRoPE(seq, x, wt, cos, sin, c.heads, 1e-5, il), 0)
			}
		}
	}
	for _, c := range []struct{ ch, h, w, groups int }{{8, 3, 3, 4}, {32, 16, 16, 8}, {64, 40, 24, 32}, {6, 1, 5000, 3}} {
		x := b.FromHost(randVec(r, c.ch*c.h*c.w), c.ch, c.h, c.w)
		w := b.FromHost(randVec(r, c.ch), c.ch)
		bias := b.FromHost(randVec(r, c.ch), c.ch)
		same(fmt.Sprintf("GroupNormSiLU %+v", c), b.GroupNormSiLU(x, w, bias, c.groups, 1e-6), fused.GroupNormSiLU(seq, x, w, bias, c.groups, 1e-6), 8)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestFusedShapeErrors checks that a bad operand makes a fused chain record
// the error its op sequence would, and leaves the backend usable.
func TestFusedShapeErrors(t *testing.T) {
	b := New()
	x := b.FromHost(make([]float32, 12), 3, 4)
	bad := b.FromHost(make([]float32, 5), 5)
	for name, f := range map[string]func(){
		"RMSNormModulate": func() { b.RMSNormModulate(x, bad, nil, 1e-6) },
		"RMSNormGatedAdd": func() { b.RMSNormGatedAdd(x, x, nil, bad, 1e-6) },
		"AddRMSNorm":      func() { b.AddRMSNorm(x, bad, nil, 1e-6) },
		"HeadRMSNormRoPE": func() { b.HeadRMSNormRoPE(x, bad, bad, bad, 2, 1e-6, true) },
		"GroupNormSiLU":   func() { b.GroupNormSiLU(x, bad, bad, 2, 1e-6) },
	} {
		f()
		if b.Err() == nil {
			t.Errorf("%s with a bad operand: no error", name)
		}
		b.ResetErr()
	}
}
