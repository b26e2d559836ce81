package weights

import (
	"fmt"
	"strings"
)

// HeaderError reports a malformed safetensors file: a bad length prefix, bad
// header JSON or an inconsistent tensor entry. Tensor is empty when the problem
// is not tied to one tensor.
type HeaderError struct {
	File   string
	Tensor string
	Reason string
}

func (e *HeaderError) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("weights: %s: tensor %q: %s", e.File, e.Tensor, e.Reason)
	}
	return fmt.Sprintf("weights: %s: %s", e.File, e.Reason)
}

// IndexError reports a malformed shard index (*.safetensors.index.json) or a
// disagreement between the index and its shards.
type IndexError struct {
	File   string // the index file
	Tensor string // empty when not about one tensor
	Shard  string // empty when not about one shard
	Reason string
	Err    error // the underlying error (e.g. the shard's *HeaderError), if any
}

func (e *IndexError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "weights: index %s: ", e.File)
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q: ", e.Tensor)
	}
	if e.Shard != "" {
		fmt.Fprintf(&b, "shard %q: ", e.Shard)
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		if e.Reason != "" {
			b.WriteString(": ")
		}
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "weights: "))
	}
	return b.String()
}

func (e *IndexError) Unwrap() error { return e.Err }

// SetError reports a problem assembling a Set that is not a header or index
// error: a directory without usable files, or the same tensor name twice.
type SetError struct {
	Path   string
	Tensor string
	Reason string
}

func (e *SetError) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("weights: %s: tensor %q: %s", e.Path, e.Tensor, e.Reason)
	}
	return fmt.Sprintf("weights: %s: %s", e.Path, e.Reason)
}

// DTypeError reports a tensor whose dtype cannot be used for the requested
// operation (e.g. decoding an integer tensor to float32).
type DTypeError struct {
	Tensor string // may be empty for raw DecodeF32 calls
	DType  DType
	Op     string
}

func (e *DTypeError) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("weights: tensor %q: %s: unsupported dtype %s", e.Tensor, e.Op, e.DType)
	}
	return fmt.Sprintf("weights: %s: unsupported dtype %s", e.Op, e.DType)
}

// Mismatch is one tensor whose stored shape differs from the one the config
// implies, or whose dtype is not a float type (then DType is set).
type Mismatch struct {
	Name  string
	Want  []int
	Got   []int
	DType DType // Invalid unless the dtype is the problem
}

func (m Mismatch) String() string {
	if m.DType != Invalid {
		return fmt.Sprintf("%s: dtype %s is not a float type", m.Name, m.DType)
	}
	return fmt.Sprintf("%s: want shape %v, got %v", m.Name, m.Want, m.Got)
}

// TensorSetError lists every way a tensor set differs from what a component's
// config requires: missing tensors, unexpected ones and wrong shapes/dtypes.
type TensorSetError struct {
	Component  string   // "transformer", "text_encoder" or "vae"
	Files      []string // files of the set
	Missing    []string
	Unexpected []string
	Mismatched []Mismatch
}

func (e *TensorSetError) Error() string {
	const show = 3
	var parts []string
	list := func(what string, total int, items []string) {
		if total == 0 {
			return
		}
		s := fmt.Sprintf("%d %s (%s", total, what, strings.Join(items[:min(show, len(items))], ", "))
		if total > show {
			s += ", ..."
		}
		parts = append(parts, s+")")
	}
	list("missing", len(e.Missing), e.Missing)
	list("unexpected", len(e.Unexpected), e.Unexpected)
	ms := make([]string, 0, show)
	for _, m := range e.Mismatched[:min(show, len(e.Mismatched))] {
		ms = append(ms, m.String())
	}
	list("mismatched", len(e.Mismatched), ms)
	where := e.Component
	if len(e.Files) == 1 {
		where += " (" + e.Files[0] + ")"
	} else if len(e.Files) > 1 {
		where += fmt.Sprintf(" (%d files)", len(e.Files))
	}
	return fmt.Sprintf("weights: %s: %s", where, strings.Join(parts, "; "))
}
