package zimage

import (
	"errors"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

func TestResolveDevice(t *testing.T) {
	noGPU := errors.Join(ErrNoDevice, errors.New("libcuda.so.1: cannot open shared object file"))
	none := func(int, uint64) (compute.Backend, error) { return nil, errors.New("not called") }

	fakeCUDA(t, noGPU, none)
	if d, err := ResolveDevice("auto"); err != nil || d.Kind != "cpu" || !errors.Is(d.Fallback, ErrNoDevice) {
		t.Errorf("auto without GPU: %+v, %v", d, err)
	}
	if d, err := ResolveDevice("cpu"); err != nil || d.Kind != "cpu" || d.Fallback != nil {
		t.Errorf("cpu: %+v, %v", d, err)
	}
	var de *DeviceError
	if _, err := ResolveDevice("cuda"); !errors.As(err, &de) || !errors.Is(err, ErrNoDevice) {
		t.Errorf("cuda without GPU: %v", err)
	}
	if _, err := ResolveDevice("tpu"); !errors.As(err, &de) || errors.Is(err, ErrNoDevice) {
		t.Errorf("tpu: %v", err)
	}

	fakeCUDA(t, nil, none)
	if d, err := ResolveDevice(""); err != nil || d.Kind != "cuda" || d.Fallback != nil {
		t.Errorf("auto with GPU: %+v, %v", d, err)
	}
	if d, err := ResolveDevice("cuda:1"); err != nil || d.Kind != "cuda" || d.Ordinal != 1 {
		t.Errorf("cuda:1: %+v, %v", d, err)
	}
}

func TestSizeMultiple(t *testing.T) {
	m, err := weights.OpenModel(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	if got := SizeMultiple(m); got != 16 {
		t.Errorf("tiny model: %d, want 16", got)
	}
	m.VAE.BlockOutChannels = m.VAE.BlockOutChannels[:3]
	if got := SizeMultiple(m); got != 8 {
		t.Errorf("3 VAE blocks: %d, want 8", got)
	}
}
