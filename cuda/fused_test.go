package cuda

import (
	"errors"
	"slices"
	"testing"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/zimage/compute"
)

// TestFusedOpsLaunchOnce checks that the fused helpers reach the backend's
// methods and that each chain is one kernel launch (GroupNorm: statistics,
// then the apply pass with SiLU on).
func TestFusedOpsLaunchOnce(t *testing.T) {
	b, f, _ := newFake(t, BF16, false)
	x := b.FromHost(make([]float32, 6*64), 6, 64)
	v := b.FromHost(make([]float32, 64), 64)
	hg := b.FromHost(make([]float32, 32), 32)
	cs := b.FromHost(make([]float32, 6*16), 6, 16)
	img := b.FromHost(make([]float32, 32*4*4), 32, 4, 4)
	g := b.FromHost(make([]float32, 32), 32)
	cases := []struct {
		name string
		run  func()
		want []string
	}{
		{"RMSNormModulate", func() { fused.RMSNormModulate(b, x, v, v, 1e-6) }, []string{"zk_rmsnorm_ex_bf16"}},
		{"RMSNormGatedAdd", func() { fused.RMSNormGatedAdd(b, x, x, v, v, 1e-6) }, []string{"zk_rmsnorm_ex_bf16"}},
		{"AddRMSNorm", func() { fused.AddRMSNorm(b, x, x, v, 1e-6) }, []string{"zk_rmsnorm_ex_bf16"}},
		{"HeadRMSNormRoPE", func() { fused.HeadRMSNormRoPE(b, x, hg, cs, cs, 2, 1e-6, true) }, []string{"zk_head_norm_rope_bf16"}},
		{"GroupNormSiLU", func() { fused.GroupNormSiLU(b, img, g, g, 8, 1e-6) }, []string{"zk_gn_stats_bf16", "zk_gn_apply_bf16"}},
	}
	for _, c := range cases {
		f.Launches = nil
		f.Record = true
		c.run()
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, l := range f.Launches {
			got = append(got, l.Kernel)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s launched %v, want %v", c.name, got, c.want)
		}
		if c.name == "GroupNormSiLU" {
			if args := f.Launches[1].Args; args[len(args)-1] != 1 {
				t.Errorf("GroupNormSiLU: apply pass without SiLU (act %d)", args[len(args)-1])
			}
		}
	}
}

// shapeErrOf runs fn and returns the backend's sticky error (reset after).
func shapeErrOf(b *Backend, fn func()) error {
	fn()
	err := b.Err()
	b.ResetErr()
	return err
}

func TestFusedOpsShapeErrors(t *testing.T) {
	b, _, _ := newFake(t, F32, false)
	x := b.FromHost(make([]float32, 6*64), 6, 64)
	y := b.FromHost(make([]float32, 5*64), 5, 64)
	v := b.FromHost(make([]float32, 64), 64)
	v2 := b.FromHost(make([]float32, 2*64), 2, 64)
	short := b.FromHost(make([]float32, 63), 63)
	cs := b.FromHost(make([]float32, 6*16), 6, 16)
	for name, fn := range map[string]func(){
		"modulate scale length": func() { b.RMSNormModulate(x, v, short, 1e-6) },
		"modulate scale rows":   func() { b.RMSNormModulate(x, v, v2, 1e-6) },
		"norm weight length":    func() { b.RMSNormModulate(x, short, nil, 1e-6) },
		"gated residual shape":  func() { b.RMSNormGatedAdd(y, x, v, v, 1e-6) },
		"add shapes":            func() { b.AddRMSNorm(x, y, v, 1e-6) },
		"rope heads":            func() { b.HeadRMSNormRoPE(x, nil, cs, cs, 3, 1e-6, true) },
		"rope table":            func() { b.HeadRMSNormRoPE(x, nil, cs, cs, 4, 1e-6, true) },
		"rope gain":             func() { b.HeadRMSNormRoPE(x, v, cs, cs, 2, 1e-6, false) },
	} {
		var se *compute.ShapeError
		if err := shapeErrOf(b, fn); !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a ShapeError", name, err)
		}
	}
}

// TestAddRMSNormSecondAllocFails: when the second output cannot be
// allocated, both results are placeholders and nothing leaks.
func TestAddRMSNormSecondAllocFails(t *testing.T) {
	b, f, _ := newFake(t, F32, false)
	x := b.FromHost(make([]float32, 1<<20), 1024, 1024) // 4 MiB
	w := b.FromHost(make([]float32, 1024), 1024)
	n, used := f.Live()
	f.TotalMem = used + 6<<20 // room for one more 4 MiB tensor, not two
	sum, norm := b.AddRMSNorm(x, x, w, 1e-6)
	if err := b.Err(); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("got %v, want out of memory", err)
	}
	if !sum.(*Tensor).placeholder || !norm.(*Tensor).placeholder {
		t.Error("results of a failed AddRMSNorm are not placeholders")
	}
	if m, _ := f.Live(); m != n {
		t.Errorf("%d live allocations after the failure, had %d", m, n)
	}
	f.TotalMem = 1 << 30
	b.ResetErr()
}
