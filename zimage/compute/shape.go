package compute

import (
	"fmt"
	"reflect"
	"slices"
)

// Shape rules shared by every backend, so that the CPU and CUDA backends
// accept exactly the same operands and report the same *ShapeError for the
// same mistake.
//
// Each rule returns the op's output shape and a nil error, or a *ShapeError
// together with a best guess of the output shape (zero where it cannot be
// known, never negative): a backend returns a placeholder of that shape after
// a failure, so later shape arithmetic in straight-line graph code stays
// sensible. A rule only reads shapes; nil operands (and typed nil pointers)
// count as shapeless, so it may be evaluated before the backend has checked
// that the operands are live tensors of its own. Backends report such
// ownership errors first and the rule's error only after.

// dims returns t's shape, or nil for a nil interface or nil pointer.
func dims(t Tensor) []int {
	if t == nil {
		return nil
	}
	if isNilPtr(t) {
		return nil
	}
	return t.Shape()
}

// shapeErr builds a *ShapeError from the operands' shapes.
func shapeErr(op, reason string, ts ...Tensor) error {
	out := make([][]int, len(ts))
	for i, t := range ts {
		out[i] = dims(t)
	}
	return &ShapeError{Op: op, Shapes: out, Reason: reason}
}

// nonNeg clamps every dimension of s at zero (in place) and returns it.
func nonNeg(s []int) []int {
	for i, d := range s {
		s[i] = max(d, 0)
	}
	return s
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// isVector reports whether s is [n].
func isVector(s []int, n int) bool { return len(s) == 1 && s[0] == n }

// isRowVector reports whether s is [n] or [1, n].
func isRowVector(s []int, n int) bool {
	return isVector(s, n) || (len(s) == 2 && s[0] == 1 && s[1] == n)
}

// MatMulShape checks MatMul's operands x [M, K], w [N, K] and bias [N] (or
// nil) and returns [M, N].
func MatMulShape(x, w, bias Tensor) ([]int, error) {
	const op = "MatMul"
	xs, ws := dims(x), dims(w)
	if len(xs) != 2 || len(ws) != 2 {
		return []int{0, 0}, shapeErr(op, "want x [M, K] and w [N, K]", x, w, bias)
	}
	out := []int{xs[0], ws[0]}
	if xs[1] != ws[1] {
		return out, shapeErr(op, "want x [M, K] and w [N, K]", x, w, bias)
	}
	if bias != nil && !isVector(dims(bias), ws[0]) {
		return out, shapeErr(op, fmt.Sprintf("bias must be [%d]", ws[0]), x, w, bias)
	}
	return out, nil
}

// Conv2DShape checks Conv2D's operands x [Ci, H, W], w [Co, Ci, kh, kw] and
// bias [Co] (or nil) for padding pad, and returns [Co, H+2pad-kh+1,
// W+2pad-kw+1].
func Conv2DShape(x, w, bias Tensor, pad int) ([]int, error) {
	const op = "Conv2D"
	xs, ws := dims(x), dims(w)
	if len(xs) != 3 || len(ws) != 4 {
		return []int{0, 0, 0}, shapeErr(op, "want x [Ci, H, W] and w [Co, Ci, kh, kw]", x, w, bias)
	}
	co, kh, kw := ws[0], ws[2], ws[3]
	out := []int{co, xs[1] + 2*pad - kh + 1, xs[2] + 2*pad - kw + 1}
	if ws[1] != xs[0] {
		return nonNeg(out), shapeErr(op, "want x [Ci, H, W] and w [Co, Ci, kh, kw]", x, w, bias)
	}
	if pad < 0 || xs[0] < 1 || kh < 1 || kw < 1 || out[1] < 1 || out[2] < 1 {
		return nonNeg(out), shapeErr(op, fmt.Sprintf("empty input, or padding %d and a %d×%d kernel leave no output", pad, kh, kw), x, w, bias)
	}
	if bias != nil && !isVector(dims(bias), co) {
		return out, shapeErr(op, fmt.Sprintf("bias must be [%d]", co), x, w, bias)
	}
	return out, nil
}

// NormShape checks a row-wise norm (RMSNorm, LayerNorm) of x viewed as
// [M, D], D its last dimension, with an optional gain w [D], and returns
// M and D. The output has x's shape.
func NormShape(op string, x, w Tensor) (m, d int, err error) {
	xs := dims(x)
	if len(xs) < 1 || xs[len(xs)-1] <= 0 {
		return 0, 0, shapeErr(op, "x must have a non-empty last dimension", x)
	}
	d = xs[len(xs)-1]
	if w != nil && !isVector(dims(w), d) {
		return 0, 0, shapeErr(op, fmt.Sprintf("weight must be [%d]", d), x, w)
	}
	return prod(xs) / d, d, nil
}

// GroupNormShape checks the operands of op (GroupNorm, or a fused variant)
// x [C, ...], w [C] and b [C] for groups groups of C/groups channels, and
// returns C. The output has x's shape.
func GroupNormShape(op string, x, w, b Tensor, groups int) (c int, err error) {
	xs := dims(x)
	if len(xs) < 2 {
		return 0, shapeErr(op, "x must be [C, H, W]", x, w, b)
	}
	c = xs[0]
	if groups <= 0 || c <= 0 || c%groups != 0 {
		return 0, shapeErr(op, fmt.Sprintf("%d channels do not split into %d groups", c, groups), x, w, b)
	}
	if !isVector(dims(w), c) || !isVector(dims(b), c) {
		return 0, shapeErr(op, fmt.Sprintf("weight and bias must be [%d]", c), x, w, b)
	}
	return c, nil
}

// RoPEShape checks RoPE's operands x [L, heads·dh] (dh even) and cos, sin
// [L, dh/2], and returns L and dh. The output has x's shape.
func RoPEShape(x, cos, sin Tensor, heads int) (l, dh int, err error) {
	const op = "RoPE"
	xs := dims(x)
	if len(xs) != 2 || heads <= 0 || xs[1] <= 0 || xs[1]%heads != 0 || (xs[1]/heads)%2 != 0 {
		return 0, 0, shapeErr(op, fmt.Sprintf("x must be [L, heads·dh] with %d heads and even dh", heads), x, cos, sin)
	}
	l, dh = xs[0], xs[1]/heads
	want := []int{l, dh / 2}
	if !slices.Equal(dims(cos), want) || !slices.Equal(dims(sin), want) {
		return 0, 0, shapeErr(op, fmt.Sprintf("cos and sin must be [%d, %d]", l, dh/2), x, cos, sin)
	}
	return l, dh, nil
}

// SameShape checks that the operands of an elementwise op (Add, SwiGLU)
// have equal shapes and returns that shape.
func SameShape(op string, x, y Tensor) ([]int, error) {
	xs := slices.Clone(dims(x))
	if !slices.Equal(xs, dims(y)) {
		return xs, shapeErr(op, "shapes differ", x, y)
	}
	return xs, nil
}

// RowBroadcastShape checks x [M, D] against a vector [D] or [1, D] that is
// broadcast over its rows (Modulate's scale), and returns M and D. The
// output has x's shape.
func RowBroadcastShape(op string, x, vec Tensor) (m, d int, err error) {
	return rowBroadcast(op, x, vec, x, vec)
}

// GatedAddShape checks GatedAdd's operands x, y [M, D] and gate [D] or
// [1, D] (or nil: any equal shapes), and returns x's shape.
func GatedAddShape(x, y, gate Tensor) ([]int, error) {
	const op = "GatedAdd"
	xs := slices.Clone(dims(x))
	if gate == nil {
		return SameShape(op, x, y)
	}
	if !slices.Equal(xs, dims(y)) {
		return xs, shapeErr(op, "x and y shapes differ", x, y, gate)
	}
	_, _, err := rowBroadcast(op, x, gate, x, y, gate)
	return xs, err
}

func rowBroadcast(op string, x, vec Tensor, ts ...Tensor) (m, d int, err error) {
	xs := dims(x)
	if len(xs) != 2 {
		return 0, 0, shapeErr(op, "x must be 2-D [M, D]", ts...)
	}
	m, d = xs[0], xs[1]
	if !isRowVector(dims(vec), d) {
		return 0, 0, shapeErr(op, fmt.Sprintf("vector must be [%d] or [1, %d]", d, d), ts...)
	}
	return m, d, nil
}

// Upsample2xShape checks x [C, H, W] and returns [C, 2H, 2W].
func Upsample2xShape(x Tensor) ([]int, error) {
	xs := dims(x)
	if len(xs) != 3 {
		return slices.Clone(xs), shapeErr("Upsample2x", "x must be [C, H, W]", x)
	}
	return []int{xs[0], 2 * xs[1], 2 * xs[2]}, nil
}

// TransposeShape checks x [R, C] and returns [C, R].
func TransposeShape(x Tensor) ([]int, error) {
	xs := dims(x)
	if len(xs) != 2 {
		return slices.Clone(xs), shapeErr("Transpose", "x must be 2-D", x)
	}
	return []int{xs[1], xs[0]}, nil
}

// EmbeddingShape checks table [V, D] and that every id is a row of it, and
// returns [len(ids), D].
func EmbeddingShape(table Tensor, ids []int) ([]int, error) {
	const op = "Embedding"
	ts := dims(table)
	if len(ts) != 2 {
		return []int{len(ids), 0}, shapeErr(op, "table must be [V, D]", table)
	}
	out := []int{len(ids), ts[1]}
	for i, id := range ids {
		if id < 0 || id >= ts[0] {
			return out, shapeErr(op, fmt.Sprintf("id %d at position %d is outside the table's %d rows", id, i, ts[0]), table)
		}
	}
	return out, nil
}

// RowsShape checks rows [start, end) of x [M, ...] and returns
// [end-start, ...].
func RowsShape(x Tensor, start, end int) ([]int, error) {
	xs := dims(x)
	out := slices.Clone(xs)
	if len(out) > 0 {
		out[0] = max(end-start, 0)
	}
	if len(xs) < 1 || start < 0 || end < start || end > xs[0] {
		return out, shapeErr("Rows", fmt.Sprintf("rows [%d, %d) out of range", start, end), x)
	}
	return out, nil
}

// SliceShape checks columns [start, end) of x [M, N] and returns
// [M, end-start].
func SliceShape(x Tensor, start, end int) ([]int, error) {
	xs := dims(x)
	m := 0
	if len(xs) == 2 {
		m = xs[0]
	}
	out := []int{m, max(end-start, 0)}
	if len(xs) != 2 || start < 0 || end < start || end > xs[1] {
		return out, shapeErr("Slice", fmt.Sprintf("columns [%d, %d) out of range of a 2-D tensor", start, end), x)
	}
	return out, nil
}

// ConcatShape checks that ts agree in rank (≥ 1) and in every dimension but
// the first, and returns their shape with the first dimensions summed.
func ConcatShape(ts ...Tensor) ([]int, error) {
	const op = "Concat"
	if len(ts) == 0 {
		return []int{0}, shapeErr(op, "no tensors")
	}
	first := dims(ts[0])
	out := slices.Clone(first)
	if len(out) > 0 {
		out[0] = 0
		for _, t := range ts {
			if s := dims(t); len(s) > 0 {
				out[0] += s[0]
			}
		}
	}
	if len(first) < 1 {
		return out, shapeErr(op, "tensors must have at least one dimension", ts...)
	}
	for _, t := range ts[1:] {
		s := dims(t)
		if len(s) != len(first) {
			return out, shapeErr(op, "ranks differ", ts...)
		}
		if !slices.Equal(s[1:], first[1:]) {
			return out, shapeErr(op, "trailing dimensions differ", ts...)
		}
	}
	return out, nil
}

// RepeatShape checks row [D] or [1, D] and n ≥ 0, and returns [n, D].
func RepeatShape(row Tensor, n int) ([]int, error) {
	rs := dims(row)
	d := 0
	if len(rs) > 0 {
		d = rs[len(rs)-1]
	}
	out := []int{max(n, 0), d}
	if n < 0 || !(len(rs) == 1 || (len(rs) == 2 && rs[0] == 1)) {
		return out, shapeErr("Repeat", fmt.Sprintf("row must be [D] or [1, D] and n ≥ 0 (n = %d)", n), row)
	}
	return out, nil
}

// ReshapeShape checks that x can be viewed as shape (same element count, no
// negative dimension) and returns a copy of shape.
func ReshapeShape(x Tensor, shape []int) ([]int, error) {
	out := slices.Clone(shape)
	for _, d := range shape {
		if d < 0 {
			return nonNeg(out), shapeErr("Reshape", fmt.Sprintf("negative dimension in %v", shape), x)
		}
	}
	if n := prod(dims(x)); n != prod(shape) {
		return out, shapeErr("Reshape", fmt.Sprintf("cannot view %d elements as %v", n, shape), x)
	}
	return out, nil
}

// AttentionShape checks Attention's operands q [Lq, heads·dh] and k, v
// [Lk, kvHeads·dh] with Lk ≥ 1 and heads a multiple of kvHeads, and returns
// Lq, Lk and dh. The output has q's shape.
func AttentionShape(q, k, v Tensor, heads, kvHeads int) (lq, lk, dh int, err error) {
	const op = "Attention"
	if heads <= 0 || kvHeads <= 0 || heads%kvHeads != 0 {
		return 0, 0, 0, shapeErr(op, fmt.Sprintf("%d query heads do not group over %d kv heads", heads, kvHeads), q, k, v)
	}
	qs, ks := dims(q), dims(k)
	if len(qs) != 2 || qs[1] <= 0 || qs[1]%heads != 0 {
		return 0, 0, 0, shapeErr(op, fmt.Sprintf("q must be [Lq, %d·dh]", heads), q, k, v)
	}
	lq, dh = qs[0], qs[1]/heads
	if len(ks) != 2 || ks[1] != kvHeads*dh || ks[0] < 1 || !slices.Equal(ks, dims(v)) {
		return 0, 0, 0, shapeErr(op, fmt.Sprintf("k and v must both be [Lk ≥ 1, %d]", kvHeads*dh), q, k, v)
	}
	return lq, ks[0], dh, nil
}

// HandleState says whether a backend can use a tensor handle given to an op.
type HandleState int

const (
	// HandleLive is a live tensor of the backend.
	HandleLive HandleState = iota
	// HandleForeign is nil, or a tensor of another backend.
	HandleForeign
	// HandlePlaceholder is the result of an op after an error.
	HandlePlaceholder
	// HandleFreed is a freed tensor, or a view of one.
	HandleFreed
)

// HandleError returns the error that backend (its name, "cpu", "cuda")
// records when op is given t in state s, or nil for HandleLive.
func HandleError(backend, op string, t Tensor, s HandleState) error {
	switch {
	case s == HandleLive:
		return nil
	case t == nil:
		return fmt.Errorf("%s: %s: nil tensor", backend, op)
	case s == HandleForeign:
		return fmt.Errorf("%s: %s: tensor of type %T does not belong to the %s backend", backend, op, t, backend)
	case s == HandlePlaceholder:
		return fmt.Errorf("%s: %s: placeholder tensor (result of an op after an error)", backend, op)
	default:
		return fmt.Errorf("%s: %s: use of a freed tensor %v", backend, op, dims(t))
	}
}

// Handle returns t as a backend's own tensor type T, or the error (see
// HandleError) that backend records when op cannot use t: nil, of another
// backend, or of T but a placeholder or freed, as state reports for a
// non-nil T.
func Handle[T Tensor](backend, op string, t Tensor, state func(T) (placeholder, freed bool)) (T, error) {
	ct, ok := t.(T)
	s := HandleForeign
	if ok && !isNilPtr(ct) {
		switch p, f := state(ct); {
		case p:
			s = HandlePlaceholder
		case f:
			s = HandleFreed
		default:
			s = HandleLive
		}
	}
	if err := HandleError(backend, op, t, s); err != nil {
		var zero T
		return zero, err
	}
	return ct, nil
}

// Operands returns an op's operands ts as the backend's tensor type T (see
// Handle), in order, or the first error: the first operand the backend
// cannot use, or else rule (the op's shape rule; nil when it holds). A nil
// entry is an absent optional operand (a MatMul bias) and yields T's zero
// value; the rule rejects a missing required one.
func Operands[T Tensor](backend, op string, rule error, state func(T) (placeholder, freed bool), ts ...Tensor) ([]T, error) {
	out := make([]T, len(ts))
	for i, t := range ts {
		if t == nil {
			continue
		}
		ct, err := Handle(backend, op, t, state)
		if err != nil {
			return nil, err
		}
		out[i] = ct
	}
	if rule != nil {
		return nil, rule
	}
	return out, nil
}

func isNilPtr(t Tensor) bool {
	v := reflect.ValueOf(t)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
