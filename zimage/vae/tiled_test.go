package vae_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/internal/computetest"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/vae"
)

// counter is a Backend wrapper that accounts for activation memory: every
// tensor an op returns counts numel·4 bytes (the CPU backend's float32)
// until it is freed; weights and views count nothing.
type counter struct {
	computetest.Observed
	live      map[compute.Tensor]int64
	cur, peak int64
	traffic   int64 // FromHost and ToHost bytes (float32)
}

func (c *counter) ToHost(t compute.Tensor) []float32 {
	c.traffic += int64(4 * compute.Numel(t))
	return c.Backend.ToHost(t)
}

func newCounter(b compute.Backend) *counter {
	c := &counter{Observed: computetest.Observed{Backend: b}, live: map[compute.Tensor]int64{}}
	c.OnResult = c.track
	return c
}

func (c *counter) track(t compute.Tensor) compute.Tensor {
	if _, ok := c.live[t]; !ok && t != nil {
		n := int64(4 * compute.Numel(t))
		c.live[t] = n
		c.cur += n
		c.peak = max(c.peak, c.cur)
	}
	return t
}

func (c *counter) resetPeak() { c.peak = c.cur }

func (c *counter) Free(ts ...compute.Tensor) {
	for _, t := range ts {
		if n, ok := c.live[t]; ok {
			c.cur -= n
			delete(c.live, t)
		}
	}
	c.Backend.Free(ts...)
}

func (c *counter) FromHost(d []float32, s ...int) compute.Tensor {
	c.traffic += int64(4 * len(d))
	return c.track(c.Backend.FromHost(d, s...))
}

// randomVAE is a decoder with seeded random bf16 weights for cfg.
type randomVAE map[string]*weights.Tensor

func (r randomVAE) Tensor(name string) (*weights.Tensor, bool) {
	t, ok := r[name]
	return t, ok
}

func newRandomVAE(cfg weights.VAEConfig, seed uint64) randomVAE {
	return newRandomVAEPart(cfg, seed, "decoder.")
}

// newRandomVAEPart is newRandomVAE for the tensors under prefix.
func newRandomVAEPart(cfg weights.VAEConfig, seed uint64, prefix string) randomVAE {
	rng := rand.New(rand.NewPCG(seed, 1))
	src := randomVAE{}
	for _, s := range weights.VAETensors(cfg) {
		if !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		vals := make([]float32, n)
		fanIn := n / s.Shape[0]
		switch {
		case strings.HasSuffix(s.Name, "norm1.weight"), strings.HasSuffix(s.Name, "norm2.weight"),
			strings.HasSuffix(s.Name, "group_norm.weight"), strings.HasSuffix(s.Name, "conv_norm_out.weight"):
			for i := range vals {
				vals[i] = 1 + 0.1*float32(rng.NormFloat64())
			}
		case len(s.Shape) == 1:
			for i := range vals {
				vals[i] = 0.1 * float32(rng.NormFloat64())
			}
		default:
			sd := 1 / math.Sqrt(float64(fanIn))
			for i := range vals {
				vals[i] = float32(sd * rng.NormFloat64())
			}
		}
		data := make([]byte, 2*n)
		weights.EncodeBF16(data, vals)
		src[s.Name] = &weights.Tensor{Name: s.Name, DType: weights.BF16, Shape: s.Shape, Data: data}
	}
	return src
}

// compareTiled checks the tiled image against the untiled one: float max
// abs ≤ 1e-3; bytes within ±1 on ≥ 99.9% of values and never more than 2 off.
func compareTiled(t *testing.T, full, tiled []float32) {
	t.Helper()
	if len(full) != len(tiled) {
		t.Fatalf("tiled image has %d values, want %d", len(tiled), len(full))
	}
	var maxAbs float64
	off1, off2 := 0, 0
	for i := range full {
		maxAbs = max(maxAbs, math.Abs(float64(full[i]-tiled[i])))
		d := int(vae.ToU8(full[i])) - int(vae.ToU8(tiled[i]))
		if d < 0 {
			d = -d
		}
		if d > 0 {
			off1++
		}
		if d > 2 {
			off2++
		}
	}
	if maxAbs > 1e-3 {
		t.Errorf("max abs difference %.3g > 1e-3", maxAbs)
	}
	if off2 > 0 || float64(off1) > 0.001*float64(len(full)) {
		t.Errorf("bytes: %d of %d differ, %d by more than 2", off1, len(full), off2)
	}
	t.Logf("max abs %.3g, %d of %d bytes differ", maxAbs, off1, len(full))
}

func TestDecodeTiledFixture(t *testing.T) {
	d, _ := load(t)
	fx := fixture.Open(t, "fixtures/vae.safetensors")
	for _, id := range []string{"nonsquare", "small"} {
		ls := fx.Shape(t, id+"/latents")
		h, w := ls[2], ls[3]
		lat := fx.F32(t, id+"/latents")
		full, err := d.Decode(context.Background(), lat, h, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		fixture.Check(t, id+" image", full, fx.F32(t, id+"/image"), fixture.VAE)
		// Tiles smaller than, not dividing, and larger than the image.
		for _, tile := range []int{8, 16, 24, 40, 4096} {
			got, err := d.DecodeTiled(context.Background(), lat, h, w, tile)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(id+"/"+itoa(tile), func(t *testing.T) { compareTiled(t, full, got) })
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

// smallConfig is the default VAE layout with these block channels and
// group count and one layer per block.
func smallConfig(channels []int, groups int) weights.VAEConfig {
	cfg := weights.DefaultVAEConfig()
	cfg.BlockOutChannels = channels
	cfg.NormNumGroups = groups
	cfg.LayersPerBlock = 1
	return cfg
}

// largerConfig is a VAE wider than the fixture's, with a channel change in
// every up block and two upsampling levels of tiles.
func largerConfig() weights.VAEConfig { return smallConfig([]int{32, 64, 96, 96}, 16) }

func TestDecodeTiledRandomConfig(t *testing.T) {
	cfg := largerConfig()
	b := cpu.New()
	d, err := vae.New(b, cfg, newRandomVAE(cfg, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, w := 14, 10
	rng := rand.New(rand.NewPCG(3, 4))
	lat := make([]float32, cfg.LatentChannels*h*w)
	for i := range lat {
		lat[i] = float32(rng.NormFloat64())
	}
	full, err := d.Decode(context.Background(), lat, h, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tile := range []int{32, 48} {
		got, err := d.DecodeTiled(context.Background(), lat, h, w, tile)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(itoa(tile), func(t *testing.T) { compareTiled(t, full, got) })
	}
}

// TestTiledMemory measures the backend's activation peak of both paths with
// a counting wrapper: the estimates bound the measurements (and are not far
// above them), and the tiled peak depends on the tile, not the image.
func TestTiledMemory(t *testing.T) {
	cfg := largerConfig()
	c := newCounter(cpu.New())
	d, err := vae.New(c, cfg, newRandomVAE(cfg, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	measure := func(h, w, tile int) int64 {
		lat := make([]float32, cfg.LatentChannels*h*w)
		for i := range lat {
			lat[i] = float32(rng.NormFloat64())
		}
		c.resetPeak()
		base := c.cur
		if tile == 0 {
			_, err = d.Decode(context.Background(), lat, h, w, nil)
		} else {
			_, err = d.DecodeTiled(context.Background(), lat, h, w, tile)
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.cur != base {
			t.Errorf("%d×%d tile %d: %d bytes not freed", h, w, tile, c.cur-base)
		}
		return c.peak - base
	}
	check := func(what string, got int64, est uint64) {
		t.Helper()
		t.Logf("%s: measured %d B, estimated %d B", what, got, est)
		if uint64(got) > est || float64(est) > 1.25*float64(got) {
			t.Errorf("%s: estimate %d B does not bound the measured %d B tightly", what, est, got)
		}
	}
	for _, sz := range [][2]int{{12, 8}, {24, 20}} {
		h, w := sz[0], sz[1]
		check("full "+itoa(h)+"x"+itoa(w), measure(h, w, 0), vae.DecodeBytes(cfg, h, w, 4))
		check("tiled 32 "+itoa(h)+"x"+itoa(w), measure(h, w, 32), vae.TiledBytes(cfg, h, w, 32, 4))
	}
	// Past the latent-resolution attention, the tiled peak does not grow with
	// the image: 4× the pixels, the same tile.
	small, large := measure(12, 8, 32), measure(24, 16, 32)
	fullLarge := measure(24, 16, 0)
	if float64(large) > 1.6*float64(small) || large*3 > fullLarge {
		t.Errorf("tiled peak %d B at 4× the pixels (was %d B; full decode %d B)", large, small, fullLarge)
	}
	// The traffic estimate leaves out only the GroupNorm parameters.
	c.traffic = 0
	measure(24, 16, 32)
	if tr := vae.TiledTraffic(cfg, 24, 16, 32); uint64(c.traffic) < tr || float64(c.traffic) > 1.05*float64(tr) {
		t.Errorf("traffic: measured %d B, estimated %d B", c.traffic, tr)
	}
}

func TestDecodeTiledErrors(t *testing.T) {
	d, _ := load(t)
	cfg := d.Config()
	lat := make([]float32, cfg.LatentChannels*4*4)
	if _, err := d.DecodeTiled(context.Background(), lat, 4, 4, 0); err == nil {
		t.Error("tile 0: want an error")
	}
	if _, err := d.DecodeTiled(context.Background(), lat[1:], 4, 4, 16); err == nil {
		t.Error("short latents: want an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.DecodeTiled(ctx, lat, 4, 4, 8); err != context.Canceled {
		t.Errorf("cancelled: got %v", err)
	}
}
