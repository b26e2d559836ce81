package zimage

import (
	"bytes"
	"context"
	"math"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestBFloat16MatchesFloat32 runs every e2e fixture case in BFloat16 and in
// Float32 (the default, exact) and requires the bf16 image to differ by a
// mean of at most 1 level (PyTorch bf16 differs from float32 by ~0.5); it
// logs the PSNR.
func TestBFloat16MatchesFloat32(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the e2e cases twice")
	}
	ref := tinyPipeline(t)
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p, err := Load(context.Background(), dir, WithDevice("cpu"), WithPrecision(BFloat16))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range e2eCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			want, err := ref.Run(context.Background(), c.request())
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Run(context.Background(), c.request())
			if err != nil {
				t.Fatal(err)
			}
			a, b := rgbBytes(got), rgbBytes(want)
			var sum, sq float64
			for i := range a {
				d := float64(a[i]) - float64(b[i])
				sum += math.Abs(d)
				sq += d * d
			}
			mean := sum / float64(len(a))
			psnr := 10 * math.Log10(255*255/math.Max(sq/float64(len(a)), 1e-12))
			t.Logf("bf16 vs fp32: mean abs diff %.3f levels, PSNR %.1f dB", mean, psnr)
			if mean > 1 {
				t.Errorf("bf16 image differs from fp32 by a mean of %.3f levels, want ≤ 1", mean)
			}
		})
	}
}

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]Precision{"fp32": Float32, "float32": Float32, "bf16": BFloat16, "bfloat16": BFloat16} {
		if got, err := ParsePrecision(s); err != nil || got != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, got, err)
		}
		if got, _ := ParsePrecision(s); got.String() != map[Precision]string{Float32: "fp32", BFloat16: "bf16"}[want] {
			t.Errorf("String = %q", got.String())
		}
	}
	if _, err := ParsePrecision("int4"); err == nil {
		t.Error("ParsePrecision(int4): no error")
	}
	if _, err := Load(context.Background(), "x", WithDevice("cpu"), WithPrecision(Precision(7))); err == nil {
		t.Error("Load with an unknown precision: no error")
	}
}

// TestThreadCountInvariant checks that an image does not depend on the
// number of CPU threads, in float32 and bf16, at a size whose token count
// and maps are not multiples of the kernels' tiles. The tiny model's maps
// are too small for GroupNorm's channel-parallel pass to cut a channel (the
// case TestGroupNormThreadInvariant covers); the GEMMs and the attention do
// split their work by thread count here.
func TestThreadCountInvariant(t *testing.T) {
	if testing.Short() {
		t.Skip("four generations")
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	req := Request{Prompt: "a lighthouse at dusk", Width: 208, Height: 144, Seed: 7, Steps: 2}
	for _, prec := range []Precision{Float32, BFloat16} {
		var want []byte
		for _, threads := range []int{1, 3} {
			p, err := Load(context.Background(), dir, WithDevice("cpu"), WithPrecision(prec), WithThreads(threads))
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Run(context.Background(), req)
			p.Close()
			if err != nil {
				t.Fatal(err)
			}
			got := rgbBytes(res)
			if want == nil {
				want = got
				continue
			}
			if !bytes.Equal(got, want) {
				n := 0
				for i := range got {
					if got[i] != want[i] {
						n++
					}
				}
				t.Errorf("%v: %d threads: %d of %d bytes differ from 1 thread", prec, threads, n, len(got))
			}
		}
	}
}
