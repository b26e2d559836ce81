package gpucheck

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

// TestRunOnFakeGPU runs the benchmark harness with the tiny fixture configs
// on the fake GPU (kernels on the CPU), so its logic is checked without one.
func TestRunOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kernels on the host shim")
	}
	lib, err := hostshim.Load()
	if errors.Is(err, hostshim.ErrNoCompiler) {
		t.Skip("g++ not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	m, err := weights.OpenModel(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	f := fakecuda.New()
	f.Shim = lib
	f.TotalMem = 2 << 30
	b, err := cuda.New(cuda.Options{Driver: f.API, BLAS: fakecuda.NewBLAS(f).API, SyntheticWeights: true, BlockThreads: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := Config{DiT: m.DiT, TE: m.TextEncoder, VAE: m.VAE, Tokens: 12, Sizes: [][2]int{{64, 32}}, Steps: 2, Reps: 1}
	r, err := Run(context.Background(), b, c, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	tab := r.Table()
	t.Log("\n" + tab)
	if len(r.Sizes) != 1 || len(r.Sizes[0].Steps) != 2 || r.Sizes[0].VAE <= 0 || r.TE <= 0 {
		t.Errorf("incomplete report %+v", r)
	}
	if r.Weights[1] == 0 || r.Sizes[0].PeakDiT < r.Weights[1] {
		t.Errorf("memory figures %+v", r)
	}
	if !strings.Contains(tab, "64x32") {
		t.Error("table lacks the size row")
	}
	if md := r.Markdown(); !strings.Contains(md, "| 64x32 | ") || !strings.Contains(md, "| DiT | ") {
		t.Errorf("markdown rows:\n%s", md)
	}
}
