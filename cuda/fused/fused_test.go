package fused

import (
	"slices"
	"testing"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// spy is a backend that implements Ops by recording the call and running the
// sequence on the CPU backend.
type spy struct {
	*cpu.Backend
	calls []string
}

func (s *spy) RMSNormModulate(x, w, scale compute.Tensor, eps float32) compute.Tensor {
	s.calls = append(s.calls, "RMSNormModulate")
	return RMSNormModulate(s.Backend, x, w, scale, eps)
}
func (s *spy) RMSNormGatedAdd(x, y, w, gate compute.Tensor, eps float32) compute.Tensor {
	s.calls = append(s.calls, "RMSNormGatedAdd")
	return RMSNormGatedAdd(s.Backend, x, y, w, gate, eps)
}
func (s *spy) AddRMSNorm(x, y, w compute.Tensor, eps float32) (compute.Tensor, compute.Tensor) {
	s.calls = append(s.calls, "AddRMSNorm")
	return AddRMSNorm(s.Backend, x, y, w, eps)
}
func (s *spy) HeadRMSNormRoPE(x, w, cos, sin compute.Tensor, heads int, eps float32, il bool) compute.Tensor {
	s.calls = append(s.calls, "HeadRMSNormRoPE")
	return HeadRMSNormRoPE(s.Backend, x, w, cos, sin, heads, eps, il)
}
func (s *spy) GroupNormSiLU(x, w, b compute.Tensor, groups int, eps float32) compute.Tensor {
	s.calls = append(s.calls, "GroupNormSiLU")
	return GroupNormSiLU(s.Backend, x, w, b, groups, eps)
}

func vals(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%7) - 2.5
	}
	return v
}

// TestHelpers checks each helper's fallback against the op sequence it
// stands for (exactly: the same ops run) and that a backend with Ops gets
// the call.
func TestHelpers(t *testing.T) {
	b := cpu.New()
	x := b.FromHost(vals(4*32), 4, 32)
	y := b.FromHost(vals(4*32), 4, 32)
	w := b.FromHost(vals(32), 32)
	hw := b.FromHost(vals(8), 8)
	cs := b.FromHost(vals(4*4), 4, 4)
	img := b.FromHost(vals(8*3*3), 8, 3, 3)
	g := b.FromHost(vals(8), 8)
	check := func(name string, got, want compute.Tensor) {
		t.Helper()
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g, w := b.ToHost(got), b.ToHost(want); !slices.Equal(g, w) {
			t.Errorf("%s: helper %v, sequence %v", name, g[:4], w[:4])
		}
	}
	scale := b.Rows(y, 0, 1)
	check("RMSNormModulate", RMSNormModulate(b, x, w, scale, 1e-6), b.Modulate(b.RMSNorm(x, w, 1e-6), scale))
	check("RMSNormModulate nil", RMSNormModulate(b, x, w, nil, 1e-6), b.RMSNorm(x, w, 1e-6))
	check("RMSNormGatedAdd", RMSNormGatedAdd(b, x, y, w, scale, 1e-6), b.GatedAdd(x, b.RMSNorm(y, w, 1e-6), scale))
	sum, norm := AddRMSNorm(b, x, y, w, 1e-6)
	check("AddRMSNorm sum", sum, b.Add(x, y))
	check("AddRMSNorm norm", norm, b.RMSNorm(b.Add(x, y), w, 1e-6))
	check("HeadRMSNormRoPE", HeadRMSNormRoPE(b, x, hw, cs, cs, 4, 1e-6, true),
		b.RoPE(b.Reshape(b.RMSNorm(b.Reshape(x, 16, 8), hw, 1e-6), 4, 32), cs, cs, 4, true))
	check("GroupNormSiLU", GroupNormSiLU(b, img, g, g, 4, 1e-6), b.SiLU(b.GroupNorm(img, g, g, 4, 1e-6)))

	s := &spy{Backend: b}
	RMSNormModulate(s, x, w, scale, 1e-6)
	RMSNormGatedAdd(s, x, y, w, nil, 1e-6)
	AddRMSNorm(s, x, y, w, 1e-6)
	HeadRMSNormRoPE(s, x, nil, cs, cs, 4, 1e-6, false)
	GroupNormSiLU(s, img, g, g, 4, 1e-6)
	want := []string{"RMSNormModulate", "RMSNormGatedAdd", "AddRMSNorm", "HeadRMSNormRoPE", "GroupNormSiLU"}
	if !slices.Equal(s.calls, want) {
		t.Errorf("calls %v, want %v", s.calls, want)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestHeadRMSNormRoPEBadShape: the fallback reports a bad head count
// through the backend's sticky error instead of panicking.
func TestHeadRMSNormRoPEBadShape(t *testing.T) {
	b := cpu.New()
	x := b.FromHost(vals(4*30), 4, 30)
	cs := b.FromHost(vals(4*4), 4, 4)
	HeadRMSNormRoPE(b, x, nil, cs, cs, 4, 1e-6, true)
	if b.Err() == nil {
		t.Fatal("no error for 30 columns in 4 heads")
	}
}
