package weights

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/internal/testdata"
)

func tinyModel(t *testing.T) string {
	t.Helper()
	return testdata.Path(t, "fixtures/tiny-z-image-turbo")
}

func TestOpenModelTiny(t *testing.T) {
	dir := tinyModel(t)
	m, err := OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Index.ClassName != "ZImagePipeline" || m.Index.Components["text_encoder"].Class != "Qwen3Model" {
		t.Errorf("model index: %+v", m.Index)
	}
	if m.DiT.Dim != 288 || m.DiT.NHeads != 6 || m.DiT.HeadDim() != 48 || m.DiT.FFNDim() != 768 || m.DiT.AdaLNDim() != 256 {
		t.Errorf("DiT config: %+v", m.DiT)
	}
	if m.TextEncoder.HiddenSize != 32 || m.TextEncoder.HeadDim != 16 || m.TextEncoder.NumKeyValueHeads != 2 {
		t.Errorf("text encoder config: %+v", m.TextEncoder)
	}
	if m.VAE.NormNumGroups != 8 || len(m.VAE.BlockOutChannels) != 4 || *m.VAE.ShiftFactor != 0.1159 {
		t.Errorf("VAE config: %+v", m.VAE)
	}
	// Keys absent from the 4-key scheduler file keep the class defaults.
	if m.Scheduler.Shift != 3 || m.Scheduler.BaseShift != 0.5 || m.Scheduler.MaxImageSeqLen != 4096 {
		t.Errorf("scheduler config: %+v", m.Scheduler)
	}

	tr, err := m.OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Len() != len(DiTTensors(m.DiT)) || tr.Len() != 521-28*15 {
		t.Errorf("transformer: %d tensors", tr.Len())
	}
	if len(tr.Files()) != 3 {
		t.Errorf("transformer files: %v", tr.Files())
	}
	te, err := m.OpenTextEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer te.Close()
	if te.Len() != 1+4*11+1 {
		t.Errorf("text encoder: %d tensors", te.Len())
	}
	vae, err := m.OpenVAE()
	if err != nil {
		t.Fatal(err)
	}
	defer vae.Close()
	// The tiny VAE changes channels once in each direction (the real one
	// twice), so it has one conv_shortcut fewer in the decoder and encoder.
	if vae.Len() != 136+104 {
		t.Errorf("vae: %d tensors", vae.Len())
	}
	for _, s := range []*Set{tr, te, vae} {
		for _, n := range s.Names() {
			tt, _ := s.Tensor(n)
			if tt.DType != BF16 {
				t.Errorf("%s: dtype %s", n, tt.DType)
			}
		}
	}
}

var _ = errors.New
var _ = os.Stat
var _ = filepath.Join
