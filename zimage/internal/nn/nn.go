// Package nn holds the small pieces the three Z-Image networks share: looking
// up checkpoint tensors under a key prefix with shape checks, and the trace
// hook that exposes named intermediates to tests.
package nn

import (
	"fmt"
	"slices"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// Source is where checkpoint tensors come from (a *weights.Set, or a test
// double). Names are full checkpoint keys.
type Source interface {
	Tensor(name string) (*weights.Tensor, bool)
}

// Trace receives named intermediate tensors during a forward pass. The tensor
// is only valid during the call (copy it with Backend.ToHost). A nil Trace
// costs nothing.
type Trace func(name string, t compute.Tensor)

// Emit calls tr when it is non-nil.
func (tr Trace) Emit(name string, t compute.Tensor) {
	if tr != nil {
		tr(name, t)
	}
}

// TensorError reports a checkpoint tensor that is missing or has an
// unexpected shape or dtype.
type TensorError struct {
	Name   string
	Want   []int // expected shape
	Got    []int // stored shape (nil when missing)
	Reason string
}

func (e *TensorError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("tensor %q: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("tensor %q: shape %v, want %v", e.Name, e.Got, e.Want)
}

// Loader binds checkpoint tensors to backend handles under a key prefix. The
// first problem is kept (later lookups return nil and record nothing), so a
// constructor reads every tensor in straight-line code and checks Err once.
type Loader struct {
	b      compute.Backend
	src    Source
	prefix string
	st     *loaderState
}

type loaderState struct {
	err    error
	owned  []compute.Tensor
	byName map[string]compute.Tensor // full name → handle, for Get'd tensors
}

// NewLoader returns a Loader reading names from src (no prefix).
func NewLoader(b compute.Backend, src Source) *Loader {
	return &Loader{b: b, src: src, st: &loaderState{}}
}

// Sub returns a Loader for the keys under prefix ("layers.3" → "layers.3.").
// It shares the error and the list of owned handles with its parent.
func (l *Loader) Sub(prefix string) *Loader {
	return &Loader{b: l.b, src: l.src, prefix: l.prefix + prefix + ".", st: l.st}
}

// Get binds the tensor prefix+name and checks that its stored shape is
// exactly shape.
func (l *Loader) Get(name string, shape ...int) compute.Tensor {
	return l.get(name, shape, false)
}

// Loose is Get where the stored shape may differ from shape by dimensions of
// size 1 (a [1, D] pad token, a [Co, Ci, 1, 1] conv used as a Linear). The
// handle is reshaped to shape.
func (l *Loader) Loose(name string, shape ...int) compute.Tensor {
	return l.get(name, shape, true)
}

func (l *Loader) get(name string, shape []int, loose bool) compute.Tensor {
	if l.st.err != nil {
		return nil
	}
	full := l.prefix + name
	t, ok := l.src.Tensor(full)
	if !ok {
		l.st.err = &TensorError{Name: full, Want: shape, Reason: "missing from the checkpoint"}
		return nil
	}
	if !t.DType.IsFloat() && !t.DType.IsQuantized() {
		l.st.err = &TensorError{Name: full, Reason: fmt.Sprintf("dtype %s is not a float type", t.DType)}
		return nil
	}
	match := slices.Equal(t.Shape, shape)
	if !match && loose {
		match = slices.Equal(squeeze(t.Shape), squeeze(shape))
	}
	if !match {
		l.st.err = &TensorError{Name: full, Want: shape, Got: t.Shape}
		return nil
	}
	if t.DType.IsQuantized() { // GGUF blocks: kept where the backend computes on them
		var err error
		if t, err = compute.ExpandQuantized(l.b, t); err != nil {
			l.st.err = fmt.Errorf("tensor %q: %w", full, err)
			return nil
		}
	}
	h := l.b.Weight(t)
	if err := l.b.Err(); err != nil {
		l.st.err = fmt.Errorf("tensor %q: %w", full, err)
		return nil
	}
	l.st.owned = append(l.st.owned, h)
	if l.st.byName == nil {
		l.st.byName = map[string]compute.Tensor{}
	}
	l.st.byName[full] = h
	if !slices.Equal(t.Shape, shape) {
		h = l.b.Reshape(h, shape...)
	}
	return h
}

// Bound returns the handle bound for the full checkpoint name (through
// this Loader or any Sub), so run-time additions such as LoRA updates can
// find a weight by its name.
func (l *Loader) Bound(name string) (compute.Tensor, bool) {
	h, ok := l.st.byName[name]
	return h, ok
}

// Err returns the first lookup problem.
func (l *Loader) Err() error { return l.st.err }

// Free releases every handle bound through this Loader or its Subs.
func (l *Loader) Free() {
	l.b.Free(l.st.owned...)
	l.st.owned = nil
	l.st.byName = nil
}

func squeeze(s []int) []int {
	out := make([]int, 0, len(s))
	for _, d := range s {
		if d != 1 {
			out = append(out, d)
		}
	}
	return out
}
