package zimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Output guards. A kernel that is wrong on some GPU shows up as NaN or Inf
// long before anyone looks at the picture: a black or noise image must never
// be delivered as a success. Every stage's output reaches the host anyway
// (caption features, the latents after each step, the decoded image), so the
// check is a scan of a host slice: at 1024² about 0.3 M values per step and
// 3 M for the image, well under a millisecond and a few milliseconds next to
// seconds of compute. A non-finite value is a *NonFiniteError naming the
// stage and step; with WithDevice("auto") (the default) the request is then
// retried on the CPU, and the pipeline stays there.

// NonFiniteError reports NaN or Inf in a stage's output.
type NonFiniteError struct {
	Stage   string // "text_encoder", "denoise" or "vae"
	Step    int    // denoising step (1-based) for "denoise", else 0
	Steps   int
	Index   int     // first non-finite value
	Value   float32 // its value
	Backend string  // the backend that produced it
}

func (e *NonFiniteError) Error() string {
	where := e.Stage
	if e.Stage == "denoise" {
		where = fmt.Sprintf("denoise step %d of %d", e.Step, e.Steps)
	}
	return fmt.Sprintf("zimage: %s on the %s backend produced a non-finite value (%v at index %d); the image would be black or noise",
		where, e.Backend, e.Value, e.Index)
}

// guard is the pipeline's state for the output guards.
type guard struct {
	cpuRetry bool // WithDevice("auto") chose the backend: retry on the CPU
	threads  int  // WithThreads, for that CPU backend
}

// newGuard records whether a failed request may be retried on the CPU:
// only when the device was chosen automatically and the pipeline owns it.
func newGuard(o *options) guard {
	kind, _, err := parseDevice(o.device)
	return guard{cpuRetry: o.backend == nil && err == nil && kind == "auto", threads: o.threads}
}

// checkFinite returns a *NonFiniteError for the first NaN or Inf in v.
func (p *Pipeline) checkFinite(stage string, step, steps int, v []float32) error {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return &NonFiniteError{Stage: stage, Step: step, Steps: steps, Index: i, Value: x, Backend: p.b.Name()}
		}
	}
	return nil
}

// retryOnCPU reruns a request that failed with non-finite values on a GPU
// chosen by WithDevice("auto"), on the CPU, which the pipeline then keeps.
// Other outcomes are returned as they are.
func (p *Pipeline) retryOnCPU(ctx context.Context, pl plan, res *Result, err error) (*Result, error) {
	var nf *NonFiniteError
	if err == nil || !errors.As(err, &nf) || !p.guard.cpuRetry || p.b.Name() == "cpu" {
		return res, err
	}
	p.log.Warn("zimage: the GPU produced non-finite values; retrying the request on the CPU, which this pipeline keeps from now on",
		"stage", nf.Stage, "step", nf.Step, "backend", nf.Backend, "err", nf.Error())
	// Networks bound to the GPU backend go with it.
	p.releaseTextEncoder()
	p.releaseDiT()
	p.releaseVAE()
	p.b.ResetErr()
	if c, ok := p.b.(io.Closer); ok && p.ownB {
		if cerr := c.Close(); cerr != nil {
			p.log.Warn("zimage: closing the GPU backend", "err", cerr)
		}
	}
	p.b, p.ownB = cpu.New(cpu.WithThreads(p.guard.threads)), true
	p.rs.fp = nil // measured at the GPU's dtype
	if c, ok := p.b.(compute.Cancellable); ok {
		c.SetContext(ctx)
		defer c.SetContext(nil)
	}
	res, err = p.runGuarded(ctx, pl)
	if err != nil {
		return nil, fmt.Errorf("zimage: retry on the CPU after %v: %w", nf, err)
	}
	return res, nil
}
