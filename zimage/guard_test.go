package zimage

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// poisoned is a "cuda" backend (the CPU underneath) whose LayerNorm (used
// by the DiT only) or GroupNorm (the VAE only) puts a NaN in its output, as
// a wrong kernel would.
type poisoned struct {
	namedBackend
	op string
}

func (b poisoned) nan(out compute.Tensor) compute.Tensor {
	v := b.ToHost(out)
	v[len(v)/2] = float32(math.NaN())
	b.Free(out)
	return b.FromHost(v, out.Shape()...)
}

func (b poisoned) LayerNorm(x compute.Tensor, eps float32) compute.Tensor {
	out := b.namedBackend.LayerNorm(x, eps)
	if b.op != "LayerNorm" {
		return out
	}
	return b.nan(out)
}

func (b poisoned) GroupNorm(x, w, bias compute.Tensor, groups int, eps float32) compute.Tensor {
	out := b.namedBackend.GroupNorm(x, w, bias, groups, eps)
	if b.op != "GroupNorm" {
		return out
	}
	return b.nan(out)
}

func TestNonFiniteOutputIsAnError(t *testing.T) {
	c := e2eCases(t)[0]
	for _, tc := range []struct {
		op, stage string
		step      int
	}{{"LayerNorm", "denoise", 1}, {"GroupNorm", "vae", 0}} {
		t.Run(tc.stage, func(t *testing.T) {
			fakeCUDA(t, nil, func(int, uint64) (compute.Backend, error) {
				return poisoned{namedBackend{cpu.New(), "cuda"}, tc.op}, nil
			})
			p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cuda"))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			req := c.request()
			req.Steps = 2
			_, err = p.Run(context.Background(), req)
			var nf *NonFiniteError
			if !errors.As(err, &nf) || nf.Stage != tc.stage || nf.Step != tc.step || nf.Backend != "cuda" {
				t.Fatalf("got %v", err)
			}
			if !strings.Contains(err.Error(), tc.stage) {
				t.Errorf("error does not name the stage: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestAutoRetriesOnCPU: with WithDevice("auto") a GPU that produces NaN
// makes the request run again on the CPU, with a log line, and the image
// is the CPU's.
func TestAutoRetriesOnCPU(t *testing.T) {
	c := e2eCases(t)[0]
	var opened int
	fakeCUDA(t, nil, func(int, uint64) (compute.Backend, error) {
		opened++
		return poisoned{namedBackend{cpu.New(), "cuda"}, "LayerNorm"}, nil
	})
	var log bytes.Buffer
	p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("auto"),
		WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Backend().Name() != "cuda" || opened != 1 {
		t.Fatalf("auto chose %s", p.Backend().Name())
	}
	res, err := p.Run(context.Background(), c.request())
	if err != nil {
		t.Fatal(err)
	}
	if p.Backend().Name() != "cpu" {
		t.Errorf("pipeline on %s after the retry", p.Backend().Name())
	}
	if !strings.Contains(log.String(), "retrying the request on the CPU") || !strings.Contains(log.String(), "stage=denoise") {
		t.Errorf("no retry log line:\n%s", log.String())
	}
	ps := pngRGB(t, "fixtures/e2e/"+c.Name+".png")
	got := rgbBytes(res)
	off := 0
	for i := range got {
		if d := int(got[i]) - int(ps[i]); d > 1 || d < -1 {
			off++
		}
	}
	if float64(off) > 0.001*float64(len(got)) {
		t.Errorf("%d of %d values more than one level off the reference", off, len(got))
	}
}
