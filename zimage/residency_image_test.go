package zimage

import (
	"testing"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/vae"
)

// TestPlanImageEncode: an img2img/inpaint request's plan makes room for the
// image encode — the VAE encoder's weights beside the kept networks and
// (vae.TestEncoderMemoryWithinDecoder) at most the decoder's activations for
// the plan's tile — which matters when the VAE decoder stays resident (else
// the decoder's own upload is larger than the encoder's).
func TestPlanImageEncode(t *testing.T) {
	f := turboFootprint()
	v := weights.DefaultVAEConfig()
	f.VAEEncoder = MeasureFootprint(&synthetic.Source{}, &synthetic.Source{},
		synthetic.VAEEncoder(v), f.Text, f.DiTC, v, 2).VAEEncoder
	// 34.3 M parameters in bf16 (the real VAE's encoder and quant_conv).
	if g := float64(f.VAEEncoder) / 1e9; g < 0.06 || g > 0.08 {
		t.Fatalf("VAE encoder footprint %.3f GB", g)
	}
	res := Parts{DiT: true, VAE: true} // steady state
	for _, gbs := range []float64{16, 24, 80} {
		for _, size := range []int{1024, 2048} {
			in := PlanInput{Free: card(gbs) - res.bytes(&f), Scratch: CUDAScratch, Model: f, Width: size, Height: size, Tokens: 100,
				Resident: res}
			p0, err := PlanResidency(in)
			if err != nil {
				continue
			}
			in.Image = true
			p1, err := PlanResidency(in)
			if err != nil {
				t.Errorf("%g GB %d²: text-to-image plans, img2img does not: %v", gbs, size, err)
				continue
			}
			spatial := 1 << (len(v.BlockOutChannels) - 1)
			a := vae.DecodeBytes(v, size/spatial, size/spatial, 2)
			if p1.VAETile > 0 {
				a = vae.TiledBytes(v, size/spatial, size/spatial, p1.VAETile, 2)
			}
			kept := Parts{p1.Keep.TextEncoder, p1.Keep.DiT, p1.Keep.VAE}.bytes(&in.Model)
			encode := kept + CUDAScratch + f.VAEEncoder + a
			t.Logf("%g GB %d²: %v", gbs, size, p1)
			if p1.Stages[2] < encode {
				t.Errorf("%g GB %d²: decode-stage estimate %s below the image encode's %s", gbs, size, gb(p1.Stages[2]), gb(encode))
			}
			if p1.Stages[2] < p0.Stages[2] || p1.Transfer != p0.Transfer+f.VAEEncoder && p1.Keep == p0.Keep && p1.VAETile == p0.VAETile {
				t.Errorf("%g GB %d²: image plan %v vs text-to-image %v", gbs, size, p1, p0)
			}
		}
	}
}
