package zimage

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"strconv"
	"strings"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/qwen3"
	"github.com/zimage/zimage/zimage/vae"
)

// Residency planning: which model parts stay on the device between
// requests, whether the text encoder is loaded whole or streamed layer by
// layer, and whether the VAE decodes in tiles. PlanResidency is a pure
// function of the device's free memory, the budget, the parts' sizes (from
// the checkpoint headers) and the request. The pipeline plans every request
// (planRequest, called from Pipeline.run), logs the plan in one Info line,
// runs the stages accordingly (encodePlanned, afterStage, decodePlanned) and
// reports the measured peak in Result.Memory.

// WithMemoryBudget caps the device memory the pipeline uses, in bytes (0:
// no cap beyond the device's free memory). The residency planner keeps every
// request's predicted peak under it, and the CUDA backend refuses any
// allocation past it. A request that cannot fit is a *MemoryError; the
// pipeline stays usable. On the CPU backend it bounds the predicted
// activation memory (weights are memory-mapped file pages there).
func WithMemoryBudget(bytes uint64) Option { return func(o *options) { o.budget = bytes } }

// Parts is a set of the model's networks.
type Parts struct{ TextEncoder, DiT, VAE bool }

func (p Parts) String() string {
	var s []string
	if p.TextEncoder {
		s = append(s, "text encoder")
	}
	if p.DiT {
		s = append(s, "DiT")
	}
	if p.VAE {
		s = append(s, "VAE")
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, "+")
}

// TEMode is how a request runs the text encoder.
type TEMode int

const (
	// TEKeep: the encoder stays resident across requests.
	TEKeep TEMode = iota
	// TELoad: loaded whole for the request, released before the DiT runs.
	TELoad
	// TEStream: bound layer by layer (two layers on the device at a time).
	TEStream
)

func (m TEMode) String() string {
	switch m {
	case TEKeep:
		return "resident"
	case TELoad:
		return "loaded then released"
	case TEStream:
		return "streamed per layer"
	}
	return fmt.Sprintf("TEMode(%d)", int(m))
}

// Footprint is what the model needs on the device: the networks' weights
// at the device dtype (from the checkpoint headers) and the configs the
// activation estimates are computed from.
type Footprint struct {
	TextEncoder uint64 // the layers the encoder runs (0..N-2); embedding rows are read per prompt
	TextLayer   uint64 // the largest of those layers (streaming holds two)
	TextEmbed   uint64 // the embedding table when it must be bound (a source without data); else 0
	DiT         uint64
	VAE         uint64 // the decoder
	Elem        int    // device bytes per value (2 for bfloat16, 4 for float32)
	// QuantScratch is the dequantization buffer of a backend that keeps
	// quantized weights (its largest quantized weight, expanded); else 0.
	QuantScratch uint64
	// VAEEncoder is the image encoder (encoder.*, quant_conv.*), uploaded
	// for the image encode of an img2img/inpaint request (PlanInput.Image).
	VAEEncoder uint64

	Text weights.Qwen3Config
	DiTC weights.DiTConfig
	VAEC weights.VAEConfig
}

// PlanInput is what PlanResidency decides from.
type PlanInput struct {
	Free     uint64 // device bytes free now (not counting what the backend holds)
	Budget   uint64 // cap on all the bytes the backend holds (0: none)
	Overhead uint64 // bytes the backend holds besides the networks (workspace, staging buffers)
	Scratch  uint64 // transient op workspace to leave free (im2col, attention score chunks)
	// Host says the weights are host pages the backend computes on in place
	// (the CPU backend): they cost no device memory and no uploads, Free is
	// ignored (no cap without a Budget), and the text encoder is released
	// after each prompt so that the page cache can keep the DiT.
	Host     bool
	Resident Parts // networks on the device now
	Model    Footprint

	Width, Height int
	Tokens        int  // the longest prompt of the request, chat template included
	CFG           bool // a negative prompt is encoded and its caption kept
	// Image: an img2img/inpaint/ControlNet request. Its image encodes run
	// after the text encoder, beside the kept networks, with the VAE
	// encoder's weights and (vae.TestEncoderMemoryWithinDecoder) at most the
	// decoder's activations for the same tile; the decode stage's estimate
	// covers them.
	Image bool
}

// Plan is the outcome of PlanResidency.
type Plan struct {
	Keep        Parts  // networks resident after the request
	Release     Parts  // resident networks to release before the request
	TextEncoder TEMode // how this request runs the text encoder
	VAETile     int    // 0: full-resolution decode; else the tile side in pixels
	// Predicted device bytes held by the backend (overhead included) at the
	// peak of each stage (encode, denoise, decode), the request's peak, and
	// what the plan had to fit in.
	Stages   [3]uint64
	Peak     uint64
	Capacity uint64
	// Transfer is the predicted host→device traffic of a steady-state
	// request: weights uploaded again each time, plus the tiled VAE's
	// traffic. It is what the planner minimises among the plans that fit.
	Transfer uint64
	Width    int
	Height   int
	Host     bool
}

// String is the plan in one line, for the log.
func (p Plan) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%dx%d: ", p.Width, p.Height)
	if p.Host {
		sb.WriteString("weights mapped on the host; ")
	} else {
		fmt.Fprintf(&sb, "keep %s resident; ", p.Keep)
	}
	if p.Release != (Parts{}) {
		fmt.Fprintf(&sb, "release %s first; ", p.Release)
	}
	fmt.Fprintf(&sb, "text encoder %s; ", p.TextEncoder)
	if p.VAETile > 0 {
		fmt.Fprintf(&sb, "VAE tiled %d px; ", p.VAETile)
	} else {
		sb.WriteString("VAE full; ")
	}
	if p.Capacity >= unlimited {
		fmt.Fprintf(&sb, "peak %s (encode %s, denoise %s, decode %s), no cap",
			gb(p.Peak), gb(p.Stages[0]), gb(p.Stages[1]), gb(p.Stages[2]))
	} else {
		fmt.Fprintf(&sb, "peak %s of %s (encode %s, denoise %s, decode %s)",
			gb(p.Peak), gb(p.Capacity), gb(p.Stages[0]), gb(p.Stages[1]), gb(p.Stages[2]))
	}
	if p.Transfer > 0 {
		fmt.Fprintf(&sb, "; %s moved per request", gb(p.Transfer))
	}
	return sb.String()
}

// gb formats a byte count in GB (MB below 1 GB).
func gb(n uint64) string {
	if n < 1e9 {
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

// MemoryError reports a request that does not fit in device memory: the
// planner found no plan under the budget and free memory (Err nil), or the
// device refused an allocation (Err matches ErrOutOfMemory). The pipeline
// stays usable.
type MemoryError struct {
	Width, Height int
	Need, Have    uint64 // bytes (0 when unknown)
	Reason        string
	Err           error
}

func (e *MemoryError) Error() string {
	s := fmt.Sprintf("zimage: %dx%d does not fit in device memory: %s", e.Width, e.Height, e.Reason)
	if e.Need > 0 {
		s += fmt.Sprintf(" (needs at least %s, %s available)", gb(e.Need), gb(e.Have))
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *MemoryError) Unwrap() error { return e.Err }

// unlimited stands for "no cap" in capacities.
const unlimited = math.MaxUint64 / 4

// CUDAScratch is the transient workspace the CUDA backend's ops may allocate
// beyond their outputs: an im2col chunk (≤ 256 MiB) or an attention score
// chunk (256 MiB of float32 scores plus their bf16 probabilities). A device
// backend with a ScratchBytes() uint64 method states its own.
const CUDAScratch = 384 << 20

// vaeTiles are the tile sides tried, largest first.
var vaeTiles = []int{2048, 1536, 1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32, 16, 8}

// TextActivation is the text encoder's peak activation bytes for a prompt
// of n tokens (the embedding rows, the residual stream and the largest
// per-layer transients).
func TextActivation(c weights.Qwen3Config, n, elem int) uint64 {
	hd := c.HeadDim
	if hd == 0 && c.NumAttentionHeads > 0 {
		hd = c.HiddenSize / c.NumAttentionHeads
	}
	D, qw, kw, I := c.HiddenSize, c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd, c.IntermediateSize
	per := max(2*D+qw+2*kw, 2*D+2*qw+3*kw, 2*D+3*I) // attention and MLP transients beside the stream
	return uint64(n*(per+hd)) * uint64(elem)        // + RoPE tables [n, hd/2]×2
}

// DiTActivation is the DiT's peak activation bytes for one forward at
// width×height with a caption of tokens rows (and a second caption with
// CFG): the block transients over the unified sequence (seven [L, dim]
// tensors in attention, three [L, dim] and three [L, ffn] in the FFN), the
// RoPE tables and the prepared captions.
func DiTActivation(c weights.DiTConfig, spatial, width, height, tokens int, cfg bool, elem int) uint64 {
	if len(c.AllPatchSize) == 0 || c.NHeads <= 0 || spatial <= 0 {
		return 0 // not a usable config (PlanResidency validates first)
	}
	p := max(c.PatchSize(), 1)
	hl, wl := height/spatial, width/spatial
	ceil := func(n int) int { return (n + dit.SeqMultiple - 1) / dit.SeqMultiple * dit.SeqMultiple }
	nip, lcp := ceil((hl/p)*(wl/p)), ceil(max(tokens, 1))
	L, D, F, hd := nip+lcp, c.Dim, c.FFNDim(), c.HeadDim()
	caps := lcp * D
	if cfg {
		caps *= 2
	}
	return uint64(L*max(7*D, 3*D+3*F)+L*hd+nip*hd+caps) * uint64(elem)
}

// TensorLister is a checkpoint's tensor headers: a *weights.Set, or a
// synthetic checkpoint (cuda/synthetic).
type TensorLister interface {
	Names() []string
	Tensor(name string) (*weights.Tensor, bool)
}

// MeasureFootprint sums the tensors each network binds, at elem device
// bytes per value: text-encoder layers 0..N-2 (not the unused last layer and
// norm, nor the embedding table, whose rows are read per prompt, unless the
// source has no data to read them from), the whole transformer, and the
// VAE decoder.
func MeasureFootprint(te, tr, va TensorLister, text weights.Qwen3Config, ditC weights.DiTConfig, vaeC weights.VAEConfig, elem int) Footprint {
	return measureFootprint(te, tr, va, text, ditC, vaeC, elem, false)
}

func measureFootprint(te, tr, va TensorLister, text weights.Qwen3Config, ditC weights.DiTConfig, vaeC weights.VAEConfig, elem int, keepQuant bool) Footprint {
	f := Footprint{Elem: elem, Text: text, DiTC: ditC, VAEC: vaeC}
	e := uint64(elem)
	size := func(t *weights.Tensor) uint64 { // residency_quant.go
		f.QuantScratch = max(f.QuantScratch, quantScratchBytes(t, e, keepQuant))
		return weightBytes(t, e, keepQuant)
	}
	layers := map[int]uint64{}
	for _, name := range te.Names() {
		rest, ok := strings.CutPrefix(name, "model.layers.")
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if err != nil || i >= text.NumHiddenLayers-1 {
			continue
		}
		t, _ := te.Tensor(name)
		layers[i] += size(t)
	}
	for _, n := range layers {
		f.TextEncoder += n
		f.TextLayer = max(f.TextLayer, n)
	}
	if t, ok := te.Tensor(qwen3.Prefix + "embed_tokens.weight"); ok && t.Data == nil {
		f.TextEmbed = uint64(t.NumElements()) * e
	}
	for _, name := range tr.Names() {
		t, _ := tr.Tensor(name)
		f.DiT += size(t)
	}
	for _, name := range va.Names() {
		if strings.HasPrefix(name, "decoder.") {
			t, _ := va.Tensor(name)
			f.VAE += size(t)
		} else if strings.HasPrefix(name, "encoder.") || strings.HasPrefix(name, "quant_conv.") {
			t, _ := va.Tensor(name)
			f.VAEEncoder += size(t)
		}
	}
	return f
}

// stage estimates for one candidate plan.
type candidate struct {
	keep     Parts
	tile     int
	stages   [3]uint64 // without overhead
	transfer uint64
}

// better orders candidate plans: a resident DiT first (it is by far the
// largest network, and its weights come from file pages that may have to be
// read from disk again, while tiling only moves host memory), then the
// least traffic per request, then the lower peak.
func better(a, b candidate) bool {
	if a.keep.DiT != b.keep.DiT {
		return a.keep.DiT
	}
	if a.transfer != b.transfer {
		return a.transfer < b.transfer
	}
	return max(a.stages[0], a.stages[1], a.stages[2]) < max(b.stages[0], b.stages[1], b.stages[2])
}

// PlanResidency picks, among the plans whose every stage fits in the
// capacity (the free device memory plus what the pipeline's networks hold
// now, capped by the budget; the kept networks are assumed resident in
// every stage), one that keeps the DiT resident if any does, and with the
// least host→device traffic per request (see better). It returns a
// *MemoryError when not even the leanest plan fits.
func PlanResidency(in PlanInput) (Plan, error) {
	m := in.Model
	dc, tc, vc := m.DiTC, m.Text, m.VAEC
	for _, err := range []error{dc.Validate(), tc.Validate(), vc.Validate()} {
		if err != nil {
			return Plan{}, fmt.Errorf("zimage: residency plan: %w", err)
		}
	}
	if in.Width <= 0 || in.Height <= 0 || in.Tokens < 0 {
		return Plan{}, fmt.Errorf("zimage: residency plan: size %dx%d, %d tokens", in.Width, in.Height, in.Tokens)
	}
	elem := max(m.Elem, 1)
	// Streaming holds two layers; either way the embedding table may be bound.
	t, tl, d, v := m.TextEncoder+m.TextEmbed, 2*m.TextLayer+m.TextEmbed, m.DiT, m.VAE
	if in.Host {
		t, tl, d, v = 0, 0, 0, 0
	}
	size := func(p Parts) uint64 {
		var n uint64
		if p.TextEncoder {
			n += t
		}
		if p.DiT {
			n += d
		}
		if p.VAE {
			n += v
		}
		return n
	}

	capacity := uint64(unlimited)
	if !in.Host {
		capacity = in.Free + size(in.Resident)
	}
	if in.Budget > 0 {
		capacity = min(capacity, in.Budget-min(in.Budget, in.Overhead))
	}
	// Leave a little room for allocator rounding and fragmentation.
	margin := uint64(0)
	if capacity < unlimited {
		margin = min(capacity/32, 256<<20)
	}
	avail := capacity - margin

	spatial := 1 << max(len(m.VAEC.BlockOutChannels)-1, 0)
	hl, wl := in.Height/spatial, in.Width/spatial
	aT := TextActivation(m.Text, in.Tokens, elem)
	if in.CFG { // the negative prompt's stream and RoPE tables beside the prompt's
		aT += uint64(in.Tokens*(m.Text.HiddenSize+m.Text.HeadDim)) * uint64(elem)
	}
	aD := DiTActivation(m.DiTC, spatial, in.Width, in.Height, in.Tokens, in.CFG, elem)
	aV := vae.DecodeBytes(m.VAEC, hl, wl, elem)
	S := in.Scratch

	// The text encoder's cheapest way in memory when it is not kept.
	teRun := func(kept uint64) uint64 {
		if kept+t+aT+S <= avail {
			return t
		}
		return min(t, tl)
	}
	var best *candidate
	var leanest uint64 = math.MaxUint64
	for _, keepTE := range []bool{true, false} {
		if in.Host && keepTE {
			continue // released after each prompt: see PlanInput.Host
		}
		for _, keepDiT := range []bool{true, false} {
			for _, keepVAE := range []bool{true, false} {
				keep := Parts{keepTE, keepDiT, keepVAE}
				kept := size(keep)
				var c candidate
				c.keep = keep
				enc := kept + aT + S
				if !keepTE {
					enc += teRun(kept)
				}
				den := kept + aD + S
				if !keepDiT {
					den += d
				}
				dec := kept + S
				if !keepVAE {
					dec += v
				}
				if in.Image { // the image encode (see PlanInput.Image)
					dec = max(dec, kept+S+m.VAEEncoder)
					if !in.Host {
						c.transfer += m.VAEEncoder
					}
				}
				if !in.Host {
					if !keepTE {
						c.transfer += t
					}
					if !keepDiT {
						c.transfer += d
					}
					if !keepVAE {
						c.transfer += v
					}
				}
				c.stages = [3]uint64{enc, den, dec + aV}
				fits := max(enc, den, dec+aV) <= avail
				if !fits {
					// Tiles, largest first (least traffic).
					for _, tile := range vaeTiles {
						if tile%spatial != 0 || tile >= max(in.Width, in.Height) {
							continue
						}
						aTile := vae.TiledBytes(m.VAEC, hl, wl, tile, elem)
						leanest = min(leanest, max(enc, den, dec+aTile))
						if max(enc, den, dec+aTile) <= avail {
							c.tile = tile
							c.stages[2] = dec + aTile
							c.transfer += vae.TiledTraffic(m.VAEC, hl, wl, tile)
							fits = true
							break
						}
					}
				}
				leanest = min(leanest, max(enc, den, dec+aV))
				if !fits {
					continue
				}
				if best == nil || better(c, *best) {
					cc := c
					best = &cc
				}
			}
		}
	}
	if best == nil {
		reason := "no residency plan fits"
		switch {
		case d+aD+S > avail:
			reason = fmt.Sprintf("the DiT alone needs %s of weights and %s of activations", gb(d), gb(aD+S))
		case in.Budget > 0 && in.Budget-min(in.Budget, in.Overhead) < in.Free+size(in.Resident):
			reason = fmt.Sprintf("over the memory budget of %s", gb(in.Budget))
		}
		return Plan{}, &MemoryError{Width: in.Width, Height: in.Height, Need: leanest + in.Overhead + margin,
			Have: capacity + in.Overhead, Reason: reason}
	}

	p := Plan{Keep: best.keep, VAETile: best.tile, Transfer: best.transfer, Width: in.Width, Height: in.Height, Host: in.Host}
	p.Release = Parts{
		TextEncoder: in.Resident.TextEncoder && !best.keep.TextEncoder,
		DiT:         in.Resident.DiT && !best.keep.DiT,
		VAE:         in.Resident.VAE && !best.keep.VAE,
	}
	// This request's text encoder: whole when it fits beside what is
	// resident at encoding time (the kept networks already on the device).
	switch {
	case best.keep.TextEncoder:
		p.TextEncoder = TEKeep
	default:
		now := size(Parts{false, in.Resident.DiT && best.keep.DiT, in.Resident.VAE && best.keep.VAE})
		if now+t+aT+S <= avail {
			p.TextEncoder = TELoad
			p.Stages[0] = now + t + aT + S
		} else {
			p.TextEncoder = TEStream
			p.Stages[0] = now + tl + aT + S
		}
	}
	if best.keep.TextEncoder {
		p.Stages[0] = best.stages[0]
	}
	p.Stages[1], p.Stages[2] = best.stages[1], best.stages[2]
	for i := range p.Stages {
		p.Stages[i] += in.Overhead
	}
	p.Peak = max(p.Stages[0], p.Stages[1], p.Stages[2])
	p.Capacity = capacity
	if capacity < unlimited {
		p.Capacity += in.Overhead
	}
	return p, nil
}

// isOOM reports a device allocation failure.
func isOOM(err error) bool { return err != nil && errors.Is(err, ErrOutOfMemory) }

// deviceMemory is what a backend with its own device memory reports (the
// CUDA backend does). Backends without it compute on host memory.
type deviceMemory interface {
	MemInfo() (free, total uint64, err error)
	CurrentBytes() uint64
	PeakBytes() uint64
	ResetPeak()
}

// Memory is a Run's device-memory account (Result.Memory).
type Memory struct {
	Plan Plan // the residency plan the request ran with
	// Peak is the measured high-water mark of device memory the backend held
	// during the Run (resident weights included); 0 when the backend does not
	// report device memory (the CPU backend).
	Peak uint64
	// Resident is what the backend still holds after the Run.
	Resident    uint64
	Free, Total uint64 // device memory when the Run was planned (0: unknown)
	Budget      uint64 // WithMemoryBudget (0: none)
}

// residency is the pipeline's residency state.
type residency struct {
	budget uint64
	fp     *Footprint
	te     *qwen3.Encoder // the resident text encoder (TEKeep)
	teSet  *weights.Set
	plan   Plan
	mem    Memory
}

// footprint measures the networks from the checkpoint headers, once.
func (p *Pipeline) footprint() (*Footprint, error) {
	if p.rs.fp != nil {
		return p.rs.fp, nil
	}
	elem := 4 // host backends compute in float32
	if _, ok := p.b.(deviceMemory); ok {
		t := p.b.FromHost([]float32{0}, 1)
		elem = t.DType().Size()
		p.b.Free(t)
	}
	var sets [3]*weights.Set
	defer func() {
		for _, s := range sets {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, open := range []func() (*weights.Set, error){p.model.OpenTextEncoder, p.model.OpenTransformer, p.model.OpenVAE} {
		s, err := open()
		if err != nil {
			return nil, fmt.Errorf("zimage: %w", err)
		}
		sets[i] = s
	}
	m := p.model
	fp := measureFootprint(sets[0], sets[1], sets[2], m.TextEncoder, m.DiT, m.VAE, elem, keepsQuantized(p.b))
	fp.DiT += p.controlNetBytes(elem) // bound and released with the DiT (controlnet.go)
	p.rs.fp = &fp
	return p.rs.fp, nil
}

// resident reports the networks the pipeline holds now.
func (p *Pipeline) resident() Parts {
	return Parts{TextEncoder: p.rs.te != nil, DiT: p.dit != nil, VAE: p.vae != nil}
}

// planRequest plans a request with tokens prompt tokens (the longer of the
// prompt and the negative prompt), releases what the plan drops, logs the
// plan and starts the peak measurement.
func (p *Pipeline) planRequest(pl plan, tokens int) (Plan, error) {
	fp, err := p.footprint()
	if err != nil {
		return Plan{}, err
	}
	in := PlanInput{Budget: p.rs.budget, Resident: p.resident(), Model: *fp,
		Width: pl.req.Width, Height: pl.req.Height, Tokens: tokens, CFG: pl.cfg, Image: pl.edit != nil || pl.control != nil}
	in.Model.DiT += loraDeviceBytes(pl.loras, fp.Elem)       // run-time LoRA matrices live beside the DiT
	in.Model.DiT += p.controlActivation(pl, tokens, fp.Elem) // ControlNet hints beside the DiT's stream (controlnet.go)
	p.rs.mem = Memory{Budget: p.rs.budget}
	dev, isDev := p.b.(deviceMemory)
	if isDev {
		free, total, err := dev.MemInfo()
		if err != nil {
			return Plan{}, fmt.Errorf("zimage: device memory: %w", err)
		}
		held, mine := dev.CurrentBytes(), in.Resident.bytes(fp)
		in.Free, in.Overhead, in.Scratch = free, held-min(held, mine), CUDAScratch
		if s, ok := p.b.(interface{ ScratchBytes() uint64 }); ok {
			in.Scratch = s.ScratchBytes()
		}
		in.Scratch, in.Overhead = addQuantScratch(p.b, fp, in.Scratch, in.Overhead) // residency_quant.go
		p.rs.mem.Free, p.rs.mem.Total = free, total
	} else {
		in.Host = true
	}
	rp, err := PlanResidency(in)
	if err != nil {
		return rp, err
	}
	if rp.Release.TextEncoder {
		p.releaseTextEncoder()
	}
	if rp.Release.DiT {
		p.releaseDiT()
	}
	if rp.Release.VAE {
		p.releaseVAE()
	}
	p.rs.plan = rp
	p.rs.mem.Plan = rp
	p.log.Info("zimage: residency", "plan", rp.String())
	if isDev {
		dev.ResetPeak()
	}
	return rp, nil
}

func (ps Parts) bytes(f *Footprint) uint64 {
	var n uint64
	if ps.TextEncoder {
		n += f.TextEncoder + f.TextEmbed
	}
	if ps.DiT {
		n += f.DiT
	}
	if ps.VAE {
		n += f.VAE
	}
	return n
}

// encodePlanned runs the text encoder the way rp says on the prompt (and
// the negative prompt when negIDs is non-nil, in the same pass over the
// layers). caps[1] is nil without CFG.
func (p *Pipeline) encodePlanned(ctx context.Context, rp Plan, ids, negIDs []int) (caps [2][]float32, err error) {
	enc := p.rs.te
	if enc == nil {
		set, err := p.model.OpenTextEncoder()
		if err != nil {
			return caps, fmt.Errorf("zimage: %w", err)
		}
		if rp.TextEncoder == TEStream {
			enc, err = qwen3.NewStreaming(p.b, p.model.TextEncoder, set)
		} else {
			enc, err = qwen3.New(p.b, p.model.TextEncoder, set)
		}
		if err != nil {
			set.Close()
			return caps, fmt.Errorf("zimage: %s: %w", p.model.Name(), err)
		}
		if rp.TextEncoder == TEKeep {
			p.rs.te, p.rs.teSet = enc, set
		} else {
			defer set.Close()
			defer enc.Close()
		}
	}
	prompts := [][]int{ids}
	if negIDs != nil {
		prompts = append(prompts, negIDs)
	}
	out, err := enc.EncodeAll(ctx, prompts...)
	if err != nil {
		return caps, err
	}
	copy(caps[:], out)
	return caps, nil
}

// decodePlanned runs the VAE, tiled when rp says so, and post-processes to
// RGBA.
func (p *Pipeline) decodePlanned(ctx context.Context, rp Plan, latents []float32, hl, wl int) (*image.RGBA, error) {
	if rp.VAETile == 0 {
		return p.decode(ctx, latents, hl, wl)
	}
	if err := p.openVAE(); err != nil {
		return nil, err
	}
	img, err := p.vae.DecodeTiled(ctx, latents, hl, wl, rp.VAETile)
	if err != nil {
		return nil, err
	}
	if err := p.checkFinite("vae", 0, 0, img); err != nil {
		return nil, err
	}
	return vae.ToImage(img, hl*p.spatial, wl*p.spatial)
}

// afterStage releases a network the plan does not keep once its stage is
// done ("denoise": the DiT, "vae": the VAE).
func (p *Pipeline) afterStage(rp Plan, stage string) {
	switch {
	case stage == "denoise" && !rp.Keep.DiT:
		p.releaseDiT()
	case stage == "vae" && !rp.Keep.VAE:
		p.releaseVAE()
	}
}

// memoryReport is the Run's Memory, with the measured peak.
func (p *Pipeline) memoryReport() Memory {
	m := p.rs.mem
	if dev, ok := p.b.(deviceMemory); ok {
		m.Peak, m.Resident = dev.PeakBytes(), dev.CurrentBytes()
	}
	return m
}

// runError turns a device out-of-memory into a *MemoryError and releases
// every resident network, so the next request is planned from a clean
// device; the pipeline stays usable.
func (p *Pipeline) runError(err error) error {
	if !isOOM(err) {
		return err
	}
	var me *MemoryError
	if errors.As(err, &me) {
		return err
	}
	p.releaseTextEncoder()
	p.releaseDiT()
	p.releaseVAE()
	rp := p.rs.plan
	return &MemoryError{Width: rp.Width, Height: rp.Height, Reason: fmt.Sprintf("the device ran out of memory (plan: %s)", rp), Err: err}
}

func (p *Pipeline) releaseTextEncoder() {
	if p.rs.te != nil {
		p.rs.te.Close()
		p.rs.te = nil
	}
	if p.rs.teSet != nil {
		p.rs.teSet.Close()
		p.rs.teSet = nil
	}
}

func (p *Pipeline) releaseDiT() {
	p.releaseLoRADevice()
	p.releaseControlNetModel()
	if p.dit != nil {
		p.dit.Close()
		p.dit = nil
	}
	if p.ditSet != nil {
		p.ditSet.Close()
		p.ditSet = nil
	}
}

func (p *Pipeline) releaseVAE() {
	if p.vae != nil {
		p.vae.Close()
		p.vae = nil
	}
	if p.vaeSet != nil {
		p.vaeSet.Close()
		p.vaeSet = nil
	}
}
