package vae_test

import (
	"context"
	"errors"
	"image/png"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/vae"
)

func load(t *testing.T) (*vae.Decoder, compute.Backend) {
	return fixture.LoadTiny(t, "vae", weights.DefaultVAEConfig(), vae.New)
}

// TestDecodeFixtures compares every intermediate, the image (rel_l2 ≤ 2e-5,
// max_rel ≤ 5e-5), the post-processed bytes and the PNG.
func TestDecodeFixtures(t *testing.T) {
	d, b := load(t)
	fx := fixture.Open(t, "fixtures/vae.safetensors")
	for _, id := range []string{"nonsquare", "small"} {
		t.Run(id, func(t *testing.T) {
			ls := fx.Shape(t, id+"/latents")
			h, w := ls[2], ls[3]
			got := map[string][]float32{}
			img, err := d.Decode(context.Background(), fx.F32(t, id+"/latents"), h, w, func(name string, x compute.Tensor) {
				got[name] = b.ToHost(x)
			})
			if err != nil {
				t.Fatal(err)
			}
			// The pipeline's scaling is float32 ops like the reference: exact.
			if !slices.Equal(got["vae_input"], fx.F32(t, id+"/vae_input")) {
				fixture.Check(t, "vae_input", got["vae_input"], fx.F32(t, id+"/vae_input"), fixture.Tol{MaxAbs: 1e-30})
			}
			names := []string{"conv_in", "mid_block.attention", "mid_block"}
			for i := range d.Config().BlockOutChannels {
				names = append(names, "up_blocks."+string(rune('0'+i)))
			}
			names = append(names, "conv_norm_out", "image")
			for _, name := range names {
				s := fixture.Check(t, name, got[name], fx.F32(t, id+"/"+name), fixture.VAE)
				if testing.Verbose() {
					t.Logf("%-20s rel_l2 %.2g max_rel %.2g", name, s.RelL2, s.MaxRel)
				}
			}
			fixture.Check(t, "image (returned)", img, fx.F32(t, id+"/image"), fixture.VAE)

			is := fx.Shape(t, id+"/image")
			H, W := is[2], is[3]
			rgba, err := vae.ToImage(img, H, W)
			if err != nil {
				t.Fatal(err)
			}
			want := fx.U8(t, id+"/image_u8")
			gotU8 := make([]byte, 0, len(want))
			for i := 0; i < H*W; i++ {
				gotU8 = append(gotU8, rgba.Pix[4*i:4*i+3]...)
			}
			ps := fixture.ComparePixels(gotU8, want)
			t.Logf("image_u8: %d of %d values differ, max %d", ps.Differ, ps.Total, ps.MaxDiff)
			if ps.MaxDiff > 1 || float64(ps.Differ) > 0.005*float64(ps.Total) {
				t.Errorf("image_u8: %+v", ps)
			}
			// The reference post-processing applied to the reference image is exact.
			ref := fx.F32(t, id+"/image")
			refImg, _ := vae.ToImage(ref, H, W)
			for i := 0; i < H*W; i++ {
				if !slices.Equal(refImg.Pix[4*i:4*i+3], want[3*i:3*i+3]) {
					t.Fatalf("ToImage(reference image) pixel %d = %v, want %v", i, refImg.Pix[4*i:4*i+3], want[3*i:3*i+3])
				}
			}
			// And the PNG holds the same pixels.
			f, err := os.Open(fixturefs.Path(t, "fixtures/vae_"+id+".png"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pimg, err := png.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			for y := 0; y < H; y++ {
				for x := 0; x < W; x++ {
					r, g, bb, _ := pimg.At(x, y).RGBA()
					i := 3 * (y*W + x)
					if uint8(r>>8) != want[i] || uint8(g>>8) != want[i+1] || uint8(bb>>8) != want[i+2] {
						t.Fatalf("PNG pixel (%d,%d) differs from image_u8", x, y)
					}
				}
			}
		})
	}
}

func TestToU8(t *testing.T) {
	for _, tc := range []struct {
		x    float32
		want uint8
	}{
		{-1, 0}, {-2, 0}, {1, 255}, {3, 255},
		{0, 128}, // 0.5·255 = 127.5 → 128 (half to even)
		{float32(math.NaN()), 0},
	} {
		if got := vae.ToU8(tc.x); got != tc.want {
			t.Errorf("ToU8(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	d, _ := load(t)
	var se *vae.ShapeError
	if _, err := d.Decode(context.Background(), make([]float32, 10), 2, 2, nil); !errors.As(err, &se) {
		t.Errorf("short latent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Decode(ctx, make([]float32, 16*4*4), 4, 4, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	cfg := weights.DefaultVAEConfig()
	cfg.NormNumGroups = 3
	var ce *vae.ConfigError
	if _, err := vae.New(cpu.New(), cfg, nil); !errors.As(err, &ce) {
		t.Errorf("bad groups: %v", err)
	}
}
