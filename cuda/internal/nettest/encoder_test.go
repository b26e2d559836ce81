package nettest

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/vae"
)

func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / n)
}

// TestEncoderOnFakeGPU runs the tiny model's VAE encoder on the CUDA
// backend, whole and in tiles (the strided downsample and its tiled form),
// against the CPU backend: f32 rel_l2 ≤ 1e-5, bf16 ≤ 3e-2 (bf16
// activations through ~30 convs; measured 1.5–1.7e-2).
func TestEncoderOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	m, err := weights.OpenModel(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := m.OpenVAE()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	const h, w = 64, 96
	img := make([]float32, 3*h*w)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range img {
		img[i] = 2*r.Float32() - 1
	}
	encode := func(b compute.Backend, tile int) *vae.Posterior {
		e, err := vae.NewEncoder(b, m.VAE, set)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		var p *vae.Posterior
		if tile > 0 {
			p, err = e.EncodeTiled(context.Background(), img, h, w, tile)
		} else {
			p, err = e.Encode(context.Background(), img, h, w, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	want := encode(cpu.New(), 0)
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		b, f := fakeBackendAndFake(t, prec)
		s2 := "zk_im2col_s2_" + map[cuda.Precision]string{cuda.F32: "f32", cuda.BF16: "bf16"}[prec]
		lim := 1e-5
		if prec == cuda.BF16 {
			lim = 3e-2
		}
		for _, tile := range []int{0, 24} {
			n0 := f.Launched(s2)
			got := encode(b, tile)
			e := max(relL2(got.Mean, want.Mean), relL2(got.Std, want.Std))
			t.Logf("%s tile %d: rel_l2 %.2g", prec, tile, e)
			// The downsamples take the strided kernel (vae.Strided), not the
			// stride-1 conv: at least one launch per Downsample2D.
			if n := f.Launched(s2) - n0; n < len(m.VAE.BlockOutChannels)-1 {
				t.Errorf("%s tile %d: %s launched %d times, want ≥ %d", prec, tile, s2, n, len(m.VAE.BlockOutChannels)-1)
			}
			if e > lim {
				t.Errorf("%s tile %d: rel_l2 %.3g > %g", prec, tile, e, lim)
			}
		}
	}
}
