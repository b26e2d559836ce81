package zimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/internal/computetest"
	"github.com/zimage/zimage/zimage/qwen3"
)

// fakeDevice is the CPU backend posing as a device with its own memory:
// every tensor an op returns and every bound weight counts numel·4 bytes
// until freed, MemInfo reports total minus that, and an allocation past
// total (or after failNext is set) records an error matching
// ErrOutOfMemory, as the CUDA backend does.
type fakeDevice struct {
	computetest.Observed
	total, overhead uint64
	failNext        bool
	// weightScale, when set, multiplies the bytes a weight counts (to
	// model a text encoder heavier than the DiT's activations, as in the
	// real model).
	weightScale func(name string) int

	mu        sync.Mutex
	live      map[compute.Tensor]uint64
	cur, peak uint64
	err       error
}

func newFakeDevice(total, overhead uint64) *fakeDevice {
	f := &fakeDevice{Observed: computetest.Observed{Backend: cpu.New()}, total: total, overhead: overhead,
		live: map[compute.Tensor]uint64{}, cur: overhead, peak: overhead}
	f.OnResult = f.tr
	return f
}

func (f *fakeDevice) Name() string         { return "fake-gpu" }
func (f *fakeDevice) ScratchBytes() uint64 { return 0 }
func (f *fakeDevice) MemInfo() (uint64, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total - min(f.total, f.cur), f.total, nil
}
func (f *fakeDevice) CurrentBytes() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.cur }
func (f *fakeDevice) PeakBytes() uint64    { f.mu.Lock(); defer f.mu.Unlock(); return f.peak }
func (f *fakeDevice) ResetPeak()           { f.mu.Lock(); defer f.mu.Unlock(); f.peak = f.cur }

func (f *fakeDevice) Err() error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Backend.Err()
}

func (f *fakeDevice) ResetErr() {
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
	f.Backend.ResetErr()
}

func (f *fakeDevice) track(t compute.Tensor, n int) compute.Tensor {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[t]; ok || t == nil {
		return t
	}
	b := uint64(4 * n)
	if f.failNext || f.cur+b > f.total {
		f.failNext = false
		if f.err == nil {
			f.err = fmt.Errorf("fake device: %w (%d B requested, %d B in use of %d B)", ErrOutOfMemory, b, f.cur, f.total)
		}
		return t
	}
	f.live[t] = b
	f.cur += b
	f.peak = max(f.peak, f.cur)
	return t
}

func (f *fakeDevice) tr(t compute.Tensor) compute.Tensor { return f.track(t, compute.Numel(t)) }

func (f *fakeDevice) Free(ts ...compute.Tensor) {
	f.mu.Lock()
	for _, t := range ts {
		if n, ok := f.live[t]; ok {
			f.cur -= n
			delete(f.live, t)
		}
	}
	f.mu.Unlock()
	f.Backend.Free(ts...)
}

func (f *fakeDevice) Weight(w *weights.Tensor) compute.Tensor {
	n := w.NumElements()
	if f.weightScale != nil {
		n *= f.weightScale(w.Name)
	}
	return f.track(f.Backend.Weight(w), n)
}
func (f *fakeDevice) FromHost(d []float32, s ...int) compute.Tensor {
	return f.tr(f.Backend.FromHost(d, s...))
}

const fakeOverhead = 1 << 20

// residencyRequest is a small CFG request (both captions, both passes).
func residencyRequest() Request {
	return Request{Prompt: "a red fox in the snow", NegativePrompt: "blurry", Width: 64, Height: 48, Seed: 11, Steps: 2, Guidance: 3}
}

// fakePipeline loads the fixture model on a fake device of total bytes.
func fakePipeline(t *testing.T, total uint64, opts ...Option) (*Pipeline, *fakeDevice) {
	t.Helper()
	fd := newFakeDevice(total, fakeOverhead)
	p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), append(opts, WithBackend(fd))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, fd
}

// findTotal returns the smallest device size (in steps of step bytes) for
// which ok accepts the cold-start and steady-state plans of req.
func findTotal(t *testing.T, fp Footprint, req Request, tokens int, ok func(cold, warm Plan) bool) uint64 {
	t.Helper()
	step := max(fp.TextLayer/4, 1024)
	for total := fp.DiT; total < 4*(fp.DiT+fp.TextEncoder+fp.VAE)+(64<<20); total += step {
		in := PlanInput{Free: total - fakeOverhead, Overhead: fakeOverhead, Model: fp, Width: req.Width, Height: req.Height,
			Tokens: tokens, CFG: req.Guidance > 0}
		cold, err := PlanResidency(in)
		if err != nil {
			continue
		}
		in.Resident = cold.Keep
		in.Free -= cold.Keep.bytes(&fp)
		warm, err := PlanResidency(in)
		if err == nil && ok(cold, warm) {
			return total
		}
	}
	t.Fatal("no device size gives the wanted plans")
	return 0
}

func reference(t *testing.T, req Request) *Result {
	t.Helper()
	res, err := tinyPipeline(t).Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// tokensOf is the longer of the request's prompts in tokens.
func tokensOf(t *testing.T, p *Pipeline, req Request) int {
	ids, _, err := p.tok.EncodeZImage(req.Prompt, DefaultMaxSequenceLen)
	if err != nil {
		t.Fatal(err)
	}
	neg, _, err := p.tok.EncodeZImage(req.NegativePrompt, DefaultMaxSequenceLen)
	if err != nil {
		t.Fatal(err)
	}
	return max(len(ids), len(neg))
}

// TestResidencyStreaming: on a device where the text encoder fits alone but
// not beside the resident DiT, the first request loads it whole and later
// ones stream it per layer; the image is the CPU's, bit for bit, and the
// measured peak stays under the predicted one. The fixture's text encoder
// is far smaller than the DiT's activations, so its layers count 400× here
// (in the device's accounting and in the footprint alike), as heavy beside
// the DiT as the real one.
func TestResidencyStreaming(t *testing.T) {
	const heavy = 400
	scale := func(name string) int {
		if strings.HasPrefix(name, "model.layers.") {
			return heavy
		}
		return 1
	}
	req := residencyRequest()
	want := reference(t, req)
	probe, _ := fakePipeline(t, 1<<40)
	fp0, err := probe.footprint()
	if err != nil {
		t.Fatal(err)
	}
	fp := *fp0
	fp.TextEncoder *= heavy
	fp.TextLayer *= heavy
	total := findTotal(t, fp, req, tokensOf(t, probe, req), func(cold, warm Plan) bool {
		return cold.TextEncoder == TELoad && warm.TextEncoder == TEStream && warm.Keep.DiT && warm.VAETile == 0
	})
	var logs bytes.Buffer
	p, fd := fakePipeline(t, total, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	fd.weightScale = scale
	p.rs.fp = &fp
	for i, mode := range []TEMode{TELoad, TEStream, TEStream} {
		res, err := p.Run(context.Background(), req)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		m := res.Memory
		t.Logf("run %d: peak %d B of %d B (predicted %d B): %v", i, m.Peak, total, m.Plan.Peak, m.Plan)
		if m.Plan.TextEncoder != mode {
			t.Errorf("run %d: text encoder %v, want %v", i, m.Plan.TextEncoder, mode)
		}
		if !bytes.Equal(res.Image.Pix, want.Image.Pix) {
			t.Errorf("run %d: image differs from the CPU's", i)
		}
		if m.Peak == 0 || m.Peak > m.Plan.Peak || m.Peak > total {
			t.Errorf("run %d: measured peak %d B, predicted %d B, device %d B", i, m.Peak, m.Plan.Peak, total)
		}
		if m.Resident != fd.CurrentBytes() || m.Free == 0 || m.Total != total {
			t.Errorf("run %d: memory report %+v", i, m)
		}
	}
	if n := strings.Count(logs.String(), "zimage: residency"); n != 3 {
		t.Errorf("%d residency log lines for 3 requests:\n%s", n, logs.String())
	}
}

// TestResidencyTiledVAE: when the full decode does not fit beside the
// resident DiT, the VAE decodes in tiles; the image stays within ±1.
func TestResidencyTiledVAE(t *testing.T) {
	req := residencyRequest()
	req.Width, req.Height = 128, 96
	want := reference(t, req)
	probe, _ := fakePipeline(t, 1<<40)
	fp, _ := probe.footprint()
	total := findTotal(t, *fp, req, tokensOf(t, probe, req), func(cold, warm Plan) bool {
		return warm.Keep.DiT && warm.VAETile > 0 && cold.VAETile > 0
	})
	p, _ := fakePipeline(t, total)
	for i := 0; i < 2; i++ {
		res, err := p.Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		m := res.Memory
		t.Logf("peak %d B of %d B (predicted %d B): %v", m.Peak, total, m.Plan.Peak, m.Plan)
		if m.Plan.VAETile == 0 || m.Peak > m.Plan.Peak {
			t.Errorf("plan %v, measured peak %d B", m.Plan, m.Peak)
		}
		off, maxd := 0, 0
		for j := range want.Image.Pix {
			d := int(res.Image.Pix[j]) - int(want.Image.Pix[j])
			if d < 0 {
				d = -d
			}
			if d > 0 {
				off++
			}
			maxd = max(maxd, d)
		}
		if maxd > 1 || float64(off) > 0.001*float64(len(want.Image.Pix)) {
			t.Errorf("tiled image: %d values differ, max %d", off, maxd)
		}
	}
}

// TestResidencyOutOfMemory: a device allocation failure is a *MemoryError
// matching ErrOutOfMemory; the pipeline releases what it held and the next
// request succeeds with the same image.
func TestResidencyOutOfMemory(t *testing.T) {
	req := residencyRequest()
	want := reference(t, req)
	p, fd := fakePipeline(t, 1<<40)
	if _, err := p.Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	fd.mu.Lock()
	fd.failNext = true
	fd.mu.Unlock()
	_, err := p.Run(context.Background(), req)
	var me *MemoryError
	if !errors.As(err, &me) || !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("want a *MemoryError matching ErrOutOfMemory, got %v", err)
	}
	t.Log(err)
	if p.resident() != (Parts{}) || fd.CurrentBytes() != fakeOverhead {
		t.Errorf("after the failure: resident %v, %d B held", p.resident(), fd.CurrentBytes())
	}
	res, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Image.Pix, want.Image.Pix) {
		t.Error("image after recovery differs")
	}
}

// TestResidencyBudget: a budget the model cannot fit in is a *MemoryError
// before any work, on a device and on the CPU, and the pipeline stays usable.
func TestResidencyBudget(t *testing.T) {
	req := residencyRequest()
	p, fd := fakePipeline(t, 1<<40, WithMemoryBudget(2<<20))
	for i := 0; i < 2; i++ {
		var me *MemoryError
		if _, err := p.Run(context.Background(), req); !errors.As(err, &me) || me.Need <= me.Have {
			t.Fatalf("run %d: want a *MemoryError, got %v", i, err)
		} else if i == 0 {
			t.Log(err)
		}
	}
	if fd.CurrentBytes() != fakeOverhead {
		t.Errorf("%d B held after refused requests", fd.CurrentBytes())
	}
	c, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cpu"), WithMemoryBudget(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var me *MemoryError
	if _, err := c.Run(context.Background(), req); !errors.As(err, &me) {
		t.Fatalf("CPU with a 1000 B budget: got %v", err)
	}
}

// TestResidencyHost: on the CPU the plan is fixed (text encoder per
// request, DiT and VAE kept, full decode) and no device peak is reported.
func TestResidencyHost(t *testing.T) {
	res := reference(t, residencyRequest())
	m := res.Memory
	if !m.Plan.Host || m.Plan.TextEncoder != TELoad || !m.Plan.Keep.DiT || m.Plan.VAETile != 0 || m.Peak != 0 {
		t.Errorf("CPU memory report %+v", m)
	}
}

// TestActivationEstimates measures the text encoder's and the DiT's
// activation peaks on the fixture model with the counting device: the
// estimates bound them, and not loosely.
func TestActivationEstimates(t *testing.T) {
	p := tinyPipeline(t)
	m := p.model
	fd := newFakeDevice(1<<40, 0)
	set, err := m.OpenTextEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	enc, err := qwen3.New(fd, m.TextEncoder, set)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ids := make([]int, 77)
	for i := range ids {
		ids[i] = 1000 + i
	}
	base := fd.CurrentBytes()
	fd.ResetPeak()
	feats, err := enc.Encode(context.Background(), ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, est uint64) {
		t.Helper()
		t.Logf("%s: measured %d B, estimated %d B", what, got, est)
		if got > est || float64(est) > 1.6*float64(got) {
			t.Errorf("%s: estimate %d B vs measured %d B", what, est, got)
		}
	}
	check("text encoder", fd.PeakBytes()-base, TextActivation(m.TextEncoder, len(ids), 4))

	dset, err := m.OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	defer dset.Close()
	d, err := dit.New(fd, m.DiT, dset)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, sz := range [][2]int{{64, 64}, {128, 96}} {
		base := fd.CurrentBytes()
		fd.ResetPeak()
		capt, err := d.PrepareCaption(context.Background(), feats, len(ids), nil)
		if err != nil {
			t.Fatal(err)
		}
		hl, wl := sz[1]/p.spatial, sz[0]/p.spatial
		if _, err := d.Forward(context.Background(), make([]float32, m.DiT.InChannels*hl*wl), hl, wl, 0.5, capt, nil); err != nil {
			t.Fatal(err)
		}
		capt.Free()
		check(fmt.Sprintf("DiT %dx%d", sz[0], sz[1]), fd.PeakBytes()-base, DiTActivation(m.DiT, p.spatial, sz[0], sz[1], len(ids), false, 4))
	}
}
