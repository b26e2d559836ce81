package zimage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/lora"
)

// LoRA selects a LoRA adapter for one Request. It is applied at run time
// (unmerged: y = x·Wᵀ + Scale·(x·Aᵀ)·Bᵀ on every Linear it targets), so
// requests can switch adapters without reloading the model.
type LoRA struct {
	Name  string  // an adapter registered with Pipeline.LoadLoRA
	Path  string  // or a LoRA file read for this request only (Name must be "")
	Scale float32 // strength; 0 means 1 (the upstream default)
}

// LoRAInfo describes a registered adapter (Pipeline.LoRAs).
type LoRAInfo struct {
	Name    string
	Path    string
	Format  lora.Format
	DType   weights.DType
	Ranks   []int
	Modules int   // Linear weights it updates
	Bytes   int64 // host memory of its float32 matrices
}

// UnknownLoRAError is a Request naming an adapter that is not registered.
// It is also a *RequestError (field "loras") through errors.As.
type UnknownLoRAError struct {
	Name      string
	Available []string // registered names, sorted
}

func (e *UnknownLoRAError) Error() string {
	avail := "none are loaded"
	if len(e.Available) > 0 {
		avail = "available: " + strings.Join(e.Available, ", ")
	}
	return fmt.Sprintf("zimage: request loras: unknown LoRA %q (%s)", e.Name, avail)
}

// As lets errors.As(err, **RequestError) match.
func (e *UnknownLoRAError) As(target any) bool {
	if t, ok := target.(**RequestError); ok {
		*t = &RequestError{Field: "loras", Reason: strings.TrimPrefix(e.Error(), "zimage: request loras: ")}
		return true
	}
	return false
}

// WithLoRA merges the LoRA file at path into the transformer weights at
// Load, at strength scale (stack several by repeating the option; merged in
// order). The touched matrices are copied once with W + scale·B·A computed
// in float32 and stored in the weight's dtype (PEFT's fuse_lora rounding),
// so generation runs at the speed of the plain model. Load fails with the
// lora package's typed errors when a file does not fit the model.
func WithLoRA(path string, scale float32) Option {
	return func(o *options) { o.loras = append(o.loras, loraSpec{path: path, scale: scale}) }
}

type loraSpec struct {
	path  string
	scale float32
}

// loraState is the pipeline's LoRA state.
type loraState struct {
	merge      []*lora.Adapter // WithLoRA, merged at DiT binding
	mergeScale []float32
	merged     *lora.Merged // the merged copies, kept across DiT re-binds
	registered map[string]*loraAdapter
}

// loraAdapter is an adapter bound to the model, with its matrices uploaded
// to the backend on first use.
type loraAdapter struct {
	name string
	ad   *lora.Adapter
	dev  map[string][2]compute.Tensor // weight → A, B on the backend
}

// bindLoRA reads a LoRA file and binds it to the model's transformer.
func (p *Pipeline) bindLoRA(path string) (*lora.Adapter, error) {
	f, err := lora.Open(path)
	if err != nil {
		return nil, err
	}
	s, err := p.model.OpenTransformer()
	if err != nil {
		return nil, fmt.Errorf("zimage: %w", err)
	}
	defer s.Close()
	return lora.Bind(f, s)
}

// LoadLoRA registers the LoRA file at path under name for Requests to
// select (Request.LoRAs); a name already registered is replaced. Errors are
// the lora package's typed errors (unsupported format, keys that match no
// weight, shape mismatches); the pipeline is unchanged then.
func (p *Pipeline) LoadLoRA(name, path string) error {
	if name == "" {
		return errors.New("zimage: LoadLoRA: empty name")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	ad, err := p.bindLoRA(path)
	if err != nil {
		return err
	}
	if p.lora.registered == nil {
		p.lora.registered = map[string]*loraAdapter{}
	}
	if old := p.lora.registered[name]; old != nil {
		p.freeLoRA(old)
	}
	p.lora.registered[name] = &loraAdapter{name: name, ad: ad}
	p.log.Info("zimage: LoRA registered", "name", name, "path", path, "format", ad.Format, "modules", len(ad.Deltas))
	return nil
}

// UnloadLoRA forgets a registered adapter (and frees its device copies).
func (p *Pipeline) UnloadLoRA(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	la := p.lora.registered[name]
	if la == nil {
		return &UnknownLoRAError{Name: name, Available: p.loraNames()}
	}
	p.freeLoRA(la)
	delete(p.lora.registered, name)
	return nil
}

// LoRAs lists the registered adapters, by name.
func (p *Pipeline) LoRAs() []LoRAInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []LoRAInfo
	for _, n := range p.loraNames() {
		ad := p.lora.registered[n].ad
		info := LoRAInfo{Name: n, Path: ad.Path, Format: ad.Format, DType: ad.DType, Modules: len(ad.Deltas), Bytes: ad.Bytes()}
		for _, d := range ad.Deltas {
			if !slices.Contains(info.Ranks, d.Rank) {
				info.Ranks = append(info.Ranks, d.Rank)
			}
		}
		slices.Sort(info.Ranks)
		out = append(out, info)
	}
	return out
}

func (p *Pipeline) loraNames() []string {
	var names []string
	for n := range p.lora.registered {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// freeLoRA releases an adapter's device copies.
func (p *Pipeline) freeLoRA(la *loraAdapter) {
	for _, ab := range la.dev {
		p.b.Free(ab[0], ab[1])
	}
	la.dev = nil
}

// releaseLoRADevice frees every registered adapter's device copies (they
// are uploaded again when next used).
func (p *Pipeline) releaseLoRADevice() {
	for _, la := range p.lora.registered {
		p.freeLoRA(la)
	}
}

// activeLoRA is one adapter selected by a request.
type activeLoRA struct {
	la    *loraAdapter // registered, or nil for a path
	path  string
	scale float32
}

// validateLoRAs checks Request.LoRAs against the registered adapters.
func (p *Pipeline) validateLoRAs(req []LoRA) ([]activeLoRA, error) {
	var out []activeLoRA
	for i, l := range req {
		s := l.Scale
		if s == 0 {
			s = 1
		}
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return nil, &RequestError{"loras", fmt.Sprintf("[%d] scale %v is not finite", i, l.Scale)}
		}
		switch {
		case l.Name != "" && l.Path != "":
			return nil, &RequestError{"loras", fmt.Sprintf("[%d] gives both a name and a path", i)}
		case l.Name != "":
			la := p.lora.registered[l.Name]
			if la == nil {
				return nil, &UnknownLoRAError{Name: l.Name, Available: p.loraNames()}
			}
			out = append(out, activeLoRA{la: la, scale: s})
		case l.Path != "":
			out = append(out, activeLoRA{path: l.Path, scale: s})
		default:
			return nil, &RequestError{"loras", fmt.Sprintf("[%d] names no adapter", i)}
		}
	}
	return out, nil
}

// applyLoRAs installs a request's adapters on the bound DiT; the returned
// function removes them (and frees per-request uploads).
func (p *Pipeline) applyLoRAs(active []activeLoRA) (func(), error) {
	if len(active) == 0 {
		return func() {}, nil
	}
	var temp []*loraAdapter
	cleanup := func() {
		p.dit.SetLoRAs(nil)
		for _, la := range temp {
			p.freeLoRA(la)
		}
	}
	byWeight := map[string][]dit.LoRA{}
	for _, a := range active {
		la := a.la
		if la == nil {
			ad, err := p.bindLoRA(a.path)
			if err != nil {
				cleanup()
				return nil, err
			}
			la = &loraAdapter{name: a.path, ad: ad}
			temp = append(temp, la)
		}
		if err := p.uploadLoRA(la); err != nil {
			cleanup()
			return nil, err
		}
		for _, d := range la.ad.Deltas {
			ab := la.dev[d.Weight]
			byWeight[d.Weight] = append(byWeight[d.Weight], dit.LoRA{A: ab[0], B: ab[1], Scale: d.Scale(a.scale)})
		}
	}
	if err := p.dit.SetLoRAs(byWeight); err != nil {
		cleanup()
		return nil, fmt.Errorf("zimage: %w", err)
	}
	return cleanup, nil
}

// uploadLoRA copies an adapter's matrices to the backend once.
func (p *Pipeline) uploadLoRA(la *loraAdapter) error {
	if la.dev != nil {
		return nil
	}
	dev := make(map[string][2]compute.Tensor, len(la.ad.Deltas))
	for _, d := range la.ad.Deltas {
		dev[d.Weight] = [2]compute.Tensor{p.b.FromHost(d.A, d.Rank, d.In), p.b.FromHost(d.B, d.Out, d.Rank)}
	}
	la.dev = dev
	if err := p.b.Err(); err != nil {
		p.freeLoRA(la)
		return fmt.Errorf("zimage: LoRA %s: upload: %w", la.name, err)
	}
	return nil
}

// loraDeviceBytes is the device memory the request's adapters need at elem
// bytes per value (for the residency plan).
func loraDeviceBytes(active []activeLoRA, elem int) uint64 {
	var n uint64
	for _, a := range active {
		if a.la != nil {
			n += uint64(a.la.ad.Bytes()) / 4 * uint64(elem)
		}
	}
	return n
}

// prepareMerge binds the WithLoRA files at Load.
func (p *Pipeline) prepareMerge(specs []loraSpec) error {
	for _, s := range specs {
		if math.IsNaN(float64(s.scale)) || math.IsInf(float64(s.scale), 0) {
			return fmt.Errorf("zimage: WithLoRA %s: scale %v is not finite", s.path, s.scale)
		}
		ad, err := p.bindLoRA(s.path)
		if err != nil {
			return err
		}
		p.lora.merge = append(p.lora.merge, ad)
		p.lora.mergeScale = append(p.lora.mergeScale, s.scale)
	}
	return nil
}

// mergedSource returns the transformer tensors with the WithLoRA adapters
// merged (computed on first use and kept), or s itself without any.
func (p *Pipeline) mergedSource(ctx context.Context, s *weights.Set) (lora.Source, error) {
	if len(p.lora.merge) == 0 {
		return s, nil
	}
	if p.lora.merged == nil {
		m, err := lora.Merge(ctx, s, p.lora.merge, p.lora.mergeScale)
		if err != nil {
			return nil, fmt.Errorf("zimage: %w", err)
		}
		p.lora.merged = m
		p.log.Info("zimage: LoRA merged", "adapters", len(p.lora.merge), "weights", len(m.Touched()), "bytes", m.Bytes())
	}
	return p.lora.merged.On(s), nil
}
