//go:build gpu

package gpucheck

import (
	"errors"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/internal/parity"
	"github.com/zimage/zimage/weights"
)

// TestGPUDownsample compares the strided Downsample2D kernel with the
// composed stride-1 conv (the conv-strided family off) at the VAE encoder's
// three downsample shapes for a 1024² image, plus a ragged one, in f32 and
// bf16 (parity tolerances; no CPU reference at this size), and logs each
// path's device time.
func TestGPUDownsample(t *testing.T) {
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		strided := gpuBackend(t, cuda.Options{Precision: prec})
		composed := gpuBackend(t, cuda.Options{Precision: prec})
		if err := composed.DisableFamily(cuda.FamConvStrided); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ c, h, w int }{{128, 1024, 1024}, {256, 512, 512}, {512, 256, 256}, {96, 66, 258}} {
			run := func(b *cuda.Backend) ([]float32, time.Duration) {
				in := parity.NewInputs(b, 5)
				x, w, bias := in.Act(1, c.c, c.h, c.w), in.Weight(weights.BF16, 0.03, c.c, c.c, 3, 3), in.Weight(weights.BF16, 1, c.c)
				var d time.Duration
				var out []float32
				for i := 0; i < 2; i++ { // warm-up, then timed
					b.Sync()
					tm, err := b.StartTimer()
					if err != nil {
						t.Fatal(err)
					}
					y := b.Downsample2D(x, w, bias)
					if d, err = tm.Stop(); err != nil {
						t.Fatal(err)
					}
					out = b.ToHost(y)
					b.Free(y)
				}
				b.Free(x, w, bias)
				return out, d
			}
			got, ts := run(strided)
			want, tc := run(composed)
			if err := errors.Join(strided.Err(), composed.Err()); err != nil {
				t.Fatal(err)
			}
			maxRel, l2 := parity.Compare(got, want)
			tm, tl := parity.Tolerances(prec == cuda.BF16)
			// "downsample " lines reach the summary of scripts/gpu-check.sh.
			t.Logf("downsample %s %dx%dx%d: strided %v, composed %v; max error %.3g, rel L2 %.3g", prec, c.c, c.h, c.w, ts, tc, maxRel, l2)
			if maxRel > tm || l2 > tl {
				t.Errorf("%s %v: strided and composed disagree", prec, c)
			}
		}
	}
}
