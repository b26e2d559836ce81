package synthetic

import (
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

// TestMatchesFixtureCheckpoint checks names and shapes against the tiny
// fixture model, whose checkpoint has the real names (every tensor the
// generator lists must exist with the same shape, and vice versa, except the
// VAE encoder).
func TestMatchesFixtureCheckpoint(t *testing.T) {
	m, err := weights.OpenModel(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	type comp struct {
		name string
		open func() (*weights.Set, error)
		gen  *Source
	}
	for _, c := range []comp{
		{"transformer", m.OpenTransformer, DiT(m.DiT)},
		{"text_encoder", m.OpenTextEncoder, TextEncoder(m.TextEncoder)},
		{"vae", m.OpenVAE, VAE(m.VAE)},
	} {
		t.Run(c.name, func(t *testing.T) {
			set, err := c.open()
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			for _, n := range set.Names() {
				if strings.HasPrefix(n, "encoder.") {
					continue
				}
				want, _ := set.Tensor(n)
				got, ok := c.gen.Tensor(n)
				if !ok {
					t.Errorf("generator lacks %s %v", n, want.Shape)
				} else if !slices.Equal(got.Shape, want.Shape) {
					t.Errorf("%s: shape %v, checkpoint %v", n, got.Shape, want.Shape)
				}
			}
			for _, n := range c.gen.Names() {
				if _, ok := set.Tensor(n); !ok {
					t.Errorf("generator invents %s", n)
				}
			}
		})
	}
}

// TestFullSizeCounts checks the real configs against the spec's counts
// (§4.1): 521 DiT tensors and 6,154,908,736 parameters; 398 text-encoder
// tensors and 4,022,468,096 parameters; 138 decoder tensors and 49,545,475
// parameters.
func TestFullSizeCounts(t *testing.T) {
	for _, c := range []struct {
		name    string
		s       *Source
		tensors int
		params  int64
	}{
		{"dit", DiT(weights.DefaultDiTConfig()), 521, 6154908736},
		{"text_encoder", TextEncoder(weights.DefaultQwen3Config()), 398, 4022468096},
		{"vae", VAE(weights.DefaultVAEConfig()), 138, 49545475},
	} {
		if n := len(c.s.Names()); n != c.tensors {
			t.Errorf("%s: %d tensors, want %d", c.name, n, c.tensors)
		}
		if p := c.s.Params(); p != c.params {
			t.Errorf("%s: %d parameters, want %d", c.name, p, c.params)
		}
	}
}
