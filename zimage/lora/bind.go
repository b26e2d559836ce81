package lora

import (
	"fmt"
	"slices"
	"strings"

	"github.com/zimage/zimage/weights"
)

// Source is a transformer's tensors under diffusers names (a *weights.Set,
// also for ComfyUI single files, whose loader maps names and splits the
// fused qkv into row views).
type Source interface {
	Tensor(name string) (*weights.Tensor, bool)
	Names() []string
}

// Delta is one bound update of a model weight: ΔW = B·A, [Out, In].
type Delta struct {
	Weight        string // model tensor ("layers.0.attention.to_q.weight")
	Key           string // the LoRA key it comes from (first of its module)
	Rank, In, Out int
	A             []float32 // [Rank, In]
	B             []float32 // [Out, Rank]
	Factor        float64   // multiplies the user's scale (Module.Factor; 0 means 1)
}

// Scale is the factor applied to B·A for a user scale s: s·Factor in
// double precision, then float32, as PEFT's scaling = s·lora_alpha/r.
func (d *Delta) Scale(s float32) float32 {
	if d.Factor == 0 || d.Factor == 1 {
		return s
	}
	return float32(float64(s) * d.Factor)
}

// Adapter is a LoRA file bound to a model: every module landed on a weight
// with the right shape.
type Adapter struct {
	Path   string
	Format Format
	DType  weights.DType
	Deltas []*Delta // sorted by Weight
}

// Bytes returns the float32 size of the adapter's matrices.
func (a *Adapter) Bytes() int64 {
	var n int64
	for _, d := range a.Deltas {
		n += int64(d.Rank) * int64(d.In+d.Out) * 4
	}
	return n
}

// Bind resolves every module of f to a weight of src: diffusers names
// directly; original-layout names (fused attention.qkv split by rows into
// to_q/to_k/to_v with A shared, attention.out → to_out.0, x_embedder and
// final_layer → all_x_embedder/all_final_layer.<patch key>) through the
// same renaming the single-file loader uses. Any module that lands on
// nothing is an *UnmatchedError listing its keys; a shape disagreement is a
// *MismatchError. Nothing is partially applied.
func Bind(f *File, src Source) (*Adapter, error) {
	ad := &Adapter{Path: f.Path, Format: f.Format, DType: f.DType}
	embKey := embedderKey(src)
	var unmatched []string
	seen := map[string]string{}
	for _, m := range f.Modules {
		parts, err := resolve(f.Path, m, embKey)
		if err != nil {
			return nil, err
		}
		for _, d := range parts {
			t, ok := src.Tensor(d.Weight)
			if !ok || !t.DType.IsFloat() {
				unmatched = append(unmatched, m.Keys...)
				break
			}
			if len(t.Shape) != 2 || t.Shape[0] != d.Out || t.Shape[1] != d.In {
				return nil, &MismatchError{Path: f.Path, Tensor: d.Weight, Weight: t.Shape, LoRA: []int{d.Out, d.In}, Key: d.Key}
			}
			if prev, dup := seen[d.Weight]; dup {
				return nil, &KeyError{Path: f.Path, Keys: []string{prev, d.Key}, Reason: fmt.Sprintf("two LoRA modules update %s", d.Weight)}
			}
			seen[d.Weight] = d.Key
			ad.Deltas = append(ad.Deltas, d)
		}
	}
	if len(unmatched) > 0 {
		slices.Sort(unmatched)
		return nil, &UnmatchedError{Path: f.Path, Keys: unmatched}
	}
	slices.SortFunc(ad.Deltas, func(a, b *Delta) int { return strings.Compare(a.Weight, b.Weight) })
	return ad, nil
}

// resolve maps a module to the model weights it updates.
func resolve(path string, m *Module, embKey string) ([]*Delta, error) {
	t := m.Target
	one := func(target string) []*Delta {
		return []*Delta{{Weight: target + ".weight", Key: m.Keys[0], Rank: m.Rank, In: m.In, Out: m.Out, A: m.A, B: m.B, Factor: m.Factor}}
	}
	if p, ok := strings.CutSuffix(t, ".attention.qkv"); ok {
		if m.Out%3 != 0 {
			return nil, &ShapeError{Path: path, Key: m.Keys[1], Shape: []int{m.Out, m.Rank}, Reason: "fused qkv up/B rows are not a multiple of 3"}
		}
		n := m.Out / 3
		var out []*Delta
		for i, name := range []string{"to_q", "to_k", "to_v"} {
			out = append(out, &Delta{Weight: p + ".attention." + name + ".weight", Key: m.Keys[0], Rank: m.Rank, In: m.In, Out: n,
				A: m.A, B: m.B[i*n*m.Rank : (i+1)*n*m.Rank : (i+1)*n*m.Rank], Factor: m.Factor})
		}
		return out, nil
	}
	if p, ok := strings.CutSuffix(t, ".attention.out"); ok {
		return one(p + ".attention.to_out.0"), nil
	}
	if embKey != "" {
		if t == "x_embedder" {
			return one("all_x_embedder." + embKey), nil
		}
		if rest, ok := strings.CutPrefix(t, "final_layer."); ok {
			return one("all_final_layer." + embKey + "." + rest), nil
		}
	}
	return one(t), nil
}

// embedderKey finds the patch key of all_x_embedder.<key>.weight ("2-1"),
// or "" when there is not exactly one.
func embedderKey(src Source) string {
	key := ""
	for _, n := range src.Names() {
		rest, ok := strings.CutPrefix(n, "all_x_embedder.")
		if !ok {
			continue
		}
		k, ok := strings.CutSuffix(rest, ".weight")
		if !ok {
			continue
		}
		if key != "" && key != k {
			return ""
		}
		key = k
	}
	return key
}
