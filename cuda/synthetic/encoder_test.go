package synthetic

import (
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

// TestVAEEncoderMatchesFixture: every encoder tensor of the tiny checkpoint
// is listed with its shape, and nothing else.
func TestVAEEncoderMatchesFixture(t *testing.T) {
	m, err := weights.OpenModel(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := m.OpenVAE()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	gen := VAEEncoder(m.VAE)
	n := 0
	for _, name := range set.Names() {
		if !strings.HasPrefix(name, "encoder.") {
			continue
		}
		n++
		want, _ := set.Tensor(name)
		if got, ok := gen.Tensor(name); !ok || !slices.Equal(got.Shape, want.Shape) {
			t.Errorf("%s: generator has %v, checkpoint %v", name, got, want.Shape)
		}
	}
	if len(gen.Names()) != n {
		t.Errorf("generator lists %d tensors, checkpoint %d", len(gen.Names()), n)
	}
}

// TestVAEEncoderCounts: the real encoder (FLUX ae.safetensors' encoder half,
// no quant_conv) has 106 tensors and 34,274,208 parameters (counted by hand
// from the architecture).
func TestVAEEncoderCounts(t *testing.T) {
	s := VAEEncoder(weights.DefaultVAEConfig())
	if n, p := len(s.Names()), s.Params(); n != 106 || p != 34274208 {
		t.Errorf("%d tensors, %d parameters", n, p)
	}
}
