package nettest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// TestPipelineWithBrokenKernels breaks four kernels the networks use, each
// in another way, and generates a fixture image on the fake GPU: the
// self-test must disable exactly those families, the pipeline must run on
// their fallbacks, and the image must still match the reference PNG with the
// f32 criterion.
func TestPipelineWithBrokenKernels(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	lib, err := hostshim.Load()
	if errors.Is(err, hostshim.ErrNoCompiler) {
		t.Skip("g++ not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	f := fakecuda.New()
	f.Shim = lib
	f.TotalMem = 4 << 30
	f.Inject("zk_rmsnorm_ex_f32", fakecuda.FaultWrong)              // fused norms → op sequence
	f.Inject("zk_head_norm_rope_f32", fakecuda.FaultIllegalAddress) // → RMSNorm + RoPE, context reopened
	f.Inject("zk_flash_attn_f32", fakecuda.FaultNaN)                // generic attention → GEMM attention
	f.Inject("zk_gn_stats_f32", fakecuda.FaultLaunch)               // GroupNorm → on the host
	var log bytes.Buffer
	b, err := cuda.New(cuda.Options{Precision: cuda.F32, Driver: f.API, BLAS: fakecuda.NewBLAS(f).API,
		SelfTest: cuda.SelfTestAuto, SelfTestCache: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if l := f.Leaks(); l != "" {
			t.Errorf("leaked: %s", l)
		}
	})
	want := []cuda.Family{cuda.FamGroupNorm, cuda.FamFusedNorm, cuda.FamFusedHeadRoPE, cuda.FamAttnGeneric}
	if got := b.Disabled(); !slices.Equal(got, want) {
		t.Fatalf("disabled %v, want %v\n%s", got, want, b.SelfTest().Table())
	}
	for _, fam := range want {
		if !strings.Contains(log.String(), "family="+string(fam)) {
			t.Errorf("no log line for %s:\n%s", fam, log.String())
		}
	}
	t.Logf("\n%s", b.SelfTest().Table())
	broken := []string{"zk_rmsnorm_ex_f32", "zk_head_norm_rope_f32", "zk_flash_attn_f32", "zk_gn_stats_f32"}
	launched := map[string]int{}
	for _, k := range broken {
		launched[k] = f.Launched(k)
	}

	c := loadCase(t, "en_64x64_seed42")
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res, err := p.Run(context.Background(), zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range broken {
		if n := f.Launched(k); n != launched[k] {
			t.Errorf("%s launched %d times by the pipeline after its family was disabled", k, n-launched[k])
		}
	}
	d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/e2e/"+c.Name+".png")))
	t.Logf("%.3f%% values >1 level off, max %d, mean |Δ| %.3f", 100*d.FracOff1(), d.Max, d.Mean)
	if d.FracOff1() > 0.001 || d.Max > 4 {
		t.Errorf("image on the fallbacks differs from the reference")
	}
}
