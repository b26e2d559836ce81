package vae_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/vae"
)

func loadEncoder(t *testing.T) (*vae.Encoder, compute.Backend) {
	return fixture.LoadTiny(t, "vae", weights.DefaultVAEConfig(), vae.NewEncoder)
}

// encodeCase is one posterior in the img2img/inpaint fixtures: the
// preprocessed input, the randn draw and what the reference computed.
type encodeCase struct {
	file, input, eps           string
	mean, std, sample, latents string // "" where the fixture does not store it
}

// TestEncodeFixtures checks the posterior (mean, std), the sample with the
// reference's eps and the scaled image latents against diffusers
// (rel_l2 ≤ 2e-5, max_rel ≤ 5e-5) for every img2img and inpaint case, and the
// inpaint pipeline's masked-image latents.
func TestEncodeFixtures(t *testing.T) {
	e, _ := loadEncoder(t)
	cases := []encodeCase{}
	for _, c := range []struct{ dir, name string }{
		{"e2e_img2img", "en_64x96_seed42_strength0.6"},
		{"e2e_img2img", "en_64x96_seed1234_strength0.6"},
		{"e2e_inpaint", "en_64x96_seed42_strength0.7"},
	} {
		f := "fixtures/" + c.dir + "/" + c.name + ".safetensors"
		cases = append(cases, encodeCase{f, "init_image_preprocessed", "vae_encode_eps", "vae_encode_mean", "vae_encode_std", "vae_encode_sample", "image_latents"})
		if c.dir == "e2e_inpaint" {
			cases = append(cases, encodeCase{f, "masked_image", "masked_vae_encode_eps", "", "", "", "masked_image_latents"})
		}
	}
	for _, c := range cases {
		t.Run(c.file[9:]+"/"+c.input, func(t *testing.T) {
			fx := fixture.Open(t, c.file)
			s := fx.Shape(t, c.input)
			h, w := s[2], s[3]
			p, err := e.Encode(context.Background(), fx.F32(t, c.input), h, w, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.H != h/e.Factor() || p.W != w/e.Factor() {
				t.Fatalf("posterior %d×%d, want %d×%d", p.H, p.W, h/e.Factor(), w/e.Factor())
			}
			if c.mean != "" {
				fixture.Check(t, "mean", p.Mean, fx.F32(t, c.mean), fixture.VAE)
				fixture.Check(t, "std", p.Std, fx.F32(t, c.std), fixture.VAE)
			}
			z, err := p.Sample(fx.F32(t, c.eps))
			if err != nil {
				t.Fatal(err)
			}
			if c.sample != "" {
				fixture.Check(t, "sample", z, fx.F32(t, c.sample), fixture.VAE)
			}
			st := fixture.Check(t, "latents", e.Latents(z), fx.F32(t, c.latents), fixture.VAE)
			t.Logf("latents rel_l2 %.2g max_rel %.2g", st.RelL2, st.MaxRel)
		})
	}
}

// TestEncodeShapeErrors: sizes the encoder cannot take are a *ShapeError and
// the encoder stays usable.
func TestEncodeShapeErrors(t *testing.T) {
	e, _ := loadEncoder(t)
	f := e.Factor()
	for _, c := range []struct{ n, h, w int }{
		{3 * f * f, f, f + 1},
		{3*f*f - 1, f, f},
		{0, 0, 0},
		{3 * 4 * f * f, 2 * f, 3 * f}, // wrong length
	} {
		_, err := e.Encode(context.Background(), make([]float32, c.n), c.h, c.w, nil)
		var se *vae.ShapeError
		if !errors.As(err, &se) {
			t.Errorf("%+v: err %v, want *vae.ShapeError", c, err)
		}
	}
	if _, err := e.Encode(context.Background(), make([]float32, 3*f*f), f, f, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := (&vae.Posterior{Mean: make([]float32, 4)}).Sample(make([]float32, 3)); err == nil {
		t.Error("Sample with a short eps: no error")
	}
}

// TestEncoderMissingTensor: a checkpoint without the encoder half is a clear
// error naming the tensor.
func TestEncoderMissingTensor(t *testing.T) {
	cfg := weights.DefaultVAEConfig()
	src := fixture.TinyComponent(t, "vae", &cfg)
	_, err := vae.NewEncoder(cpu.New(), cfg, dropPrefix{src, "encoder.mid_block"})
	if err == nil || !strings.Contains(err.Error(), "encoder.mid_block") {
		t.Fatalf("err = %v", err)
	}
}

type dropPrefix struct {
	src    fixture.Multi
	prefix string
}

func (d dropPrefix) Tensor(name string) (*weights.Tensor, bool) {
	if strings.HasPrefix(name, d.prefix) {
		return nil, false
	}
	return d.src.Tensor(name)
}

// TestDownsampleMatchesStridedConv compares Downsample with a direct
// Downsample2D (pad right/bottom by one, 3×3 conv, stride 2) in float64.
func TestDownsampleMatchesStridedConv(t *testing.T) {
	const C, H, W = 5, 6, 10
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, C*H*W)
	wt := make([]float32, C*C*9)
	bias := make([]float32, C)
	for _, s := range [][]float32{x, wt, bias} {
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
	}
	b := cpu.New()
	out := b.ToHost(vae.Downsample(b, b.FromHost(x, C, H, W), b.FromHost(wt, C, C, 3, 3), b.FromHost(bias, C)))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, C*(H/2)*(W/2))
	for o := 0; o < C; o++ {
		for i := 0; i < H/2; i++ {
			for j := 0; j < W/2; j++ {
				acc := float64(bias[o])
				for c := 0; c < C; c++ {
					for ky := 0; ky < 3; ky++ {
						for kx := 0; kx < 3; kx++ {
							y, xx := 2*i+ky, 2*j+kx
							if y < H && xx < W {
								acc += float64(wt[((o*C+c)*3+ky)*3+kx]) * float64(x[(c*H+y)*W+xx])
							}
						}
					}
				}
				want[(o*(H/2)+i)*(W/2)+j] = float32(acc)
			}
		}
	}
	fixture.Check(t, "downsample", out, want, fixture.Tol{MaxAbs: 1e-5})
}

// TestEncodeTiledMatchesEncode: tiled encoding gives Encode's posterior
// (rel_l2 ≤ 2e-5) for tiles that split every level unevenly, one tile, and
// tiles smaller than the latent cell.
func TestEncodeTiledMatchesEncode(t *testing.T) {
	e, _ := loadEncoder(t)
	fx := fixture.Open(t, "fixtures/e2e_img2img/en_64x96_seed42_strength0.6.safetensors")
	img := fx.F32(t, "init_image_preprocessed")
	want, err := e.Encode(context.Background(), img, 64, 96, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tile := range []int{8, 24, 40, 1000} {
		got, err := e.EncodeTiled(context.Background(), img, 64, 96, tile)
		if err != nil {
			t.Fatal(tile, err)
		}
		s := fixture.Check(t, fmt.Sprintf("tile %d mean", tile), got.Mean, want.Mean, fixture.VAE)
		fixture.Check(t, fmt.Sprintf("tile %d std", tile), got.Std, want.Std, fixture.VAE)
		t.Logf("tile %d: mean rel_l2 %.2g", tile, s.RelL2)
	}
	if _, err := e.EncodeTiled(context.Background(), img, 64, 96, 0); err == nil {
		t.Error("tile 0: no error")
	}
}

// TestEncoderMemoryWithinDecoder backs the pipeline's residency claim: with
// the real VAE's proportions (widths 1:2:4:4, two resnets per level) the
// encoder's activation peak on an image is at most the decoder's on its
// latents, whole and with the same tile, measured by the counting backend,
// which hides the CPU's native Downsample2D (the composed path), and by
// stridedCounter, which exposes it (the path of the CPU and CUDA backends).
func TestEncoderMemoryWithinDecoder(t *testing.T) {
	cfg := weights.DefaultVAEConfig()
	cfg.BlockOutChannels = []int{16, 32, 64, 64}
	cfg.NormNumGroups = 8
	c := newCounter(cpu.New())
	d, err := vae.New(c, cfg, newRandomVAE(cfg, 9))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	e, err := vae.NewEncoder(c, cfg, newRandomVAEPart(cfg, 10, "encoder."))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// The same encoder on the native strided Downsample2D (both backends' path).
	es, err := vae.NewEncoder(stridedCounter{c}, cfg, newRandomVAEPart(cfg, 10, "encoder."))
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	f := e.Factor()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, sz := range [][2]int{{12, 8}, {20, 24}} {
		h, w := sz[0], sz[1]
		for _, tile := range []int{0, 32} {
			img := make([]float32, 3*h*f*w*f)
			lat := make([]float32, cfg.LatentChannels*h*w)
			for i := range img {
				img[i] = 2*rng.Float32() - 1
			}
			for i := range lat {
				lat[i] = float32(rng.NormFloat64())
			}
			base := c.cur
			var enc int64
			for _, e := range []*vae.Encoder{e, es} {
				c.resetPeak()
				if tile == 0 {
					_, err = e.Encode(context.Background(), img, h*f, w*f, nil)
				} else {
					_, err = e.EncodeTiled(context.Background(), img, h*f, w*f, tile)
				}
				if err != nil {
					t.Fatal(err)
				}
				enc = max(enc, c.peak-base)
				if c.cur != base {
					t.Errorf("%dx%d tile %d: encoder left %d bytes", h, w, tile, c.cur-base)
				}
			}
			c.resetPeak()
			if tile == 0 {
				_, err = d.Decode(context.Background(), lat, h, w, nil)
			} else {
				_, err = d.DecodeTiled(context.Background(), lat, h, w, tile)
			}
			if err != nil {
				t.Fatal(err)
			}
			dec := c.peak - base
			t.Logf("latent %dx%d tile %d: encoder peak %d B, decoder peak %d B", h, w, tile, enc, dec)
			if enc > dec {
				t.Errorf("latent %dx%d tile %d: encoder peak %d B above the decoder's %d B", h, w, tile, enc, dec)
			}
		}
	}
}

// TestEncodeRandomConfig: another config (one resnet per level, widths
// 32/64/96/96, 16 groups) gives the same posterior with the CPU's native
// Downsample2D, with the composed one (the counting wrapper hides the
// native one), and tiled.
func TestEncodeRandomConfig(t *testing.T) {
	cfg := largerConfig()
	src := newRandomVAEPart(cfg, 11, "encoder.")
	native, err := vae.NewEncoder(cpu.New(), cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	defer native.Close()
	composed, err := vae.NewEncoder(newCounter(cpu.New()), cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	defer composed.Close()
	h, w := 48, 80
	img := make([]float32, 3*h*w)
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range img {
		img[i] = 2*rng.Float32() - 1
	}
	want, err := native.Encode(context.Background(), img, h, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := composed.Encode(context.Background(), img, h, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	fixture.Check(t, "composed mean", got.Mean, want.Mean, fixture.VAE)
	fixture.Check(t, "composed std", got.Std, want.Std, fixture.VAE)
	for _, tile := range []int{16, 40} {
		got, err := native.EncodeTiled(context.Background(), img, h, w, tile)
		if err != nil {
			t.Fatal(err)
		}
		fixture.Check(t, fmt.Sprintf("tile %d mean", tile), got.Mean, want.Mean, fixture.VAE)
		fixture.Check(t, fmt.Sprintf("tile %d std", tile), got.Std, want.Std, fixture.VAE)
	}
}

// stridedCounter is counter with the wrapped backend's native Downsample2D
// (vae.Strided), its result counted.
type stridedCounter struct{ *counter }

func (s stridedCounter) Downsample2D(x, w, bias compute.Tensor) compute.Tensor {
	return s.track(s.Backend.(vae.Strided).Downsample2D(x, w, bias))
}
