package compute

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/weights"
)

// fake is a shape-only Tensor.
type fake []int

func (f fake) Shape() []int         { return f }
func (f fake) DType() weights.DType { return weights.F32 }

func t(s ...int) Tensor { return fake(s) }

type fakePtr struct{ s []int }

func (f *fakePtr) Shape() []int         { return f.s }
func (f *fakePtr) DType() weights.DType { return weights.F32 }

// check compares a rule's result with the wanted shape and error reason
// ("" for success).
func check(t *testing.T, name string, got, want []int, err error, reason string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Errorf("%s: unexpected error %v", name, err)
		}
	} else {
		var se *ShapeError
		if !errors.As(err, &se) {
			t.Errorf("%s: want a *ShapeError, got %v", name, err)
		} else if !strings.Contains(se.Reason, reason) {
			t.Errorf("%s: reason %q, want it to contain %q", name, se.Reason, reason)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: shape %v, want %v", name, got, want)
	}
	for _, d := range got {
		if d < 0 {
			t.Errorf("%s: negative dimension in %v", name, got)
		}
	}
}

func TestMatMulShape(t_ *testing.T) {
	for _, c := range []struct {
		name       string
		x, w, bias Tensor
		want       []int
		reason     string
	}{
		{"plain", t(3, 4), t(5, 4), nil, []int{3, 5}, ""},
		{"bias", t(3, 4), t(5, 4), t(5), []int{3, 5}, ""},
		{"empty", t(0, 4), t(5, 4), nil, []int{0, 5}, ""},
		{"k mismatch", t(3, 4), t(5, 6), nil, []int{3, 5}, "want x [M, K] and w [N, K]"},
		{"rank", t(3, 4, 1), t(5, 4), nil, []int{0, 0}, "want x [M, K] and w [N, K]"},
		{"nil x", nil, t(5, 4), nil, []int{0, 0}, "want x [M, K]"},
		{"typed nil x", (*fakePtr)(nil), t(5, 4), nil, []int{0, 0}, "want x [M, K]"},
		{"bias length", t(3, 4), t(5, 4), t(4), []int{3, 5}, "bias must be [5]"},
		{"bias rank", t(3, 4), t(5, 4), t(1, 5), []int{3, 5}, "bias must be [5]"},
	} {
		got, err := MatMulShape(c.x, c.w, c.bias)
		check(t_, c.name, got, c.want, err, c.reason)
	}
}

func TestConv2DShape(t_ *testing.T) {
	for _, c := range []struct {
		name       string
		x, w, bias Tensor
		pad        int
		want       []int
		reason     string
	}{
		{"3x3 pad 1", t(2, 8, 9), t(4, 2, 3, 3), t(4), 1, []int{4, 8, 9}, ""},
		{"3x3 pad 0", t(2, 8, 9), t(4, 2, 3, 3), nil, 0, []int{4, 6, 7}, ""},
		{"1x1", t(2, 8, 9), t(4, 2, 1, 1), nil, 0, []int{4, 8, 9}, ""},
		{"channels", t(3, 8, 9), t(4, 2, 3, 3), nil, 1, []int{4, 8, 9}, "want x [Ci, H, W] and w [Co, Ci, kh, kw]"},
		{"rank", t(8, 9), t(4, 2, 3, 3), nil, 1, []int{0, 0, 0}, "want x [Ci, H, W]"},
		{"no output", t(2, 1, 1), t(4, 2, 3, 3), nil, 0, []int{4, 0, 0}, "leave no output"},
		{"negative pad", t(2, 8, 8), t(4, 2, 1, 1), nil, -1, []int{4, 6, 6}, "padding -1"},
		{"empty input", t(0, 8, 8), t(4, 0, 1, 1), nil, 0, []int{4, 8, 8}, "empty input"},
		{"bias", t(2, 8, 9), t(4, 2, 3, 3), t(3), 1, []int{4, 8, 9}, "bias must be [4]"},
	} {
		got, err := Conv2DShape(c.x, c.w, c.bias, c.pad)
		check(t_, c.name, got, c.want, err, c.reason)
	}
}

func TestNormShapes(t_ *testing.T) {
	for _, c := range []struct {
		name   string
		x, w   Tensor
		m, d   int
		reason string
	}{
		{"2-D", t(3, 8), t(8), 3, 8, ""},
		{"no gain", t(3, 8), nil, 3, 8, ""},
		{"3-D", t(2, 3, 8), nil, 6, 8, ""},
		{"empty rows", t(0, 8), nil, 0, 8, ""},
		{"empty last", t(3, 0), nil, 0, 0, "non-empty last dimension"},
		{"scalar", t(), nil, 0, 0, "non-empty last dimension"},
		{"gain length", t(3, 8), t(4), 0, 0, "weight must be [8]"},
		{"gain rank", t(3, 8), t(1, 8), 0, 0, "weight must be [8]"},
	} {
		m, d, err := NormShape("RMSNorm", c.x, c.w)
		check(t_, c.name, []int{m, d}, []int{c.m, c.d}, err, c.reason)
	}
	for _, c := range []struct {
		name    string
		x, w, b Tensor
		groups  int
		c       int
		reason  string
	}{
		{"ok", t(8, 2, 2), t(8), t(8), 4, 8, ""},
		{"split", t(6, 2, 2), t(6), t(6), 4, 0, "6 channels do not split into 4 groups"},
		{"zero groups", t(8, 2, 2), t(8), t(8), 0, 0, "do not split"},
		{"zero channels", t(0, 2, 2), t(0), t(0), 1, 0, "do not split"},
		{"rank", t(8), t(8), t(8), 4, 0, "x must be [C, H, W]"},
		{"affine", t(8, 2, 2), t(8), t(4), 4, 0, "weight and bias must be [8]"},
		{"nil affine", t(8, 2, 2), nil, t(8), 4, 0, "weight and bias must be [8]"},
	} {
		got, err := GroupNormShape("GroupNorm", c.x, c.w, c.b, c.groups)
		check(t_, c.name, []int{got}, []int{c.c}, err, c.reason)
	}
}

func TestRoPEAndAttentionShapes(t_ *testing.T) {
	for _, c := range []struct {
		name        string
		x, cos, sin Tensor
		heads       int
		l, dh       int
		reason      string
	}{
		{"ok", t(5, 12), t(5, 3), t(5, 3), 2, 5, 6, ""},
		{"odd dh", t(5, 6), t(5, 1), t(5, 1), 2, 0, 0, "even dh"},
		{"heads", t(5, 12), t(5, 3), t(5, 3), 0, 0, 0, "with 0 heads"},
		{"tables", t(5, 12), t(4, 3), t(5, 3), 2, 0, 0, "cos and sin must be [5, 3]"},
	} {
		l, dh, err := RoPEShape(c.x, c.cos, c.sin, c.heads)
		check(t_, c.name, []int{l, dh}, []int{c.l, c.dh}, err, c.reason)
	}
	for _, c := range []struct {
		name           string
		q, k, v        Tensor
		heads, kvHeads int
		want           []int
		reason         string
	}{
		{"mha", t(4, 16), t(7, 16), t(7, 16), 4, 4, []int{4, 7, 4}, ""},
		{"gqa", t(4, 16), t(7, 8), t(7, 8), 4, 2, []int{4, 7, 4}, ""},
		{"groups", t(4, 16), t(7, 8), t(7, 8), 4, 3, []int{0, 0, 0}, "do not group"},
		{"q", t(4, 15), t(7, 8), t(7, 8), 4, 2, []int{0, 0, 0}, "q must be [Lq, 4·dh]"},
		{"kv width", t(4, 16), t(7, 16), t(7, 16), 4, 2, []int{0, 0, 0}, "k and v must both be [Lk ≥ 1, 8]"},
		{"kv differ", t(4, 16), t(7, 8), t(6, 8), 4, 2, []int{0, 0, 0}, "k and v must both be"},
		{"no keys", t(4, 16), t(0, 8), t(0, 8), 4, 2, []int{0, 0, 0}, "Lk ≥ 1"},
	} {
		lq, lk, dh, err := AttentionShape(c.q, c.k, c.v, c.heads, c.kvHeads)
		check(t_, c.name, []int{lq, lk, dh}, c.want, err, c.reason)
	}
}

func TestElementwiseShapes(t_ *testing.T) {
	got, err := SameShape("Add", t(2, 3), t(2, 3))
	check(t_, "same", got, []int{2, 3}, err, "")
	got, err = SameShape("Add", t(2, 3), t(3, 2))
	check(t_, "differ", got, []int{2, 3}, err, "shapes differ")

	m, d, err := RowBroadcastShape("Modulate", t(4, 3), t(3))
	check(t_, "broadcast [D]", []int{m, d}, []int{4, 3}, err, "")
	m, d, err = RowBroadcastShape("Modulate", t(4, 3), t(1, 3))
	check(t_, "broadcast [1, D]", []int{m, d}, []int{4, 3}, err, "")
	m, d, err = RowBroadcastShape("Modulate", t(4, 3), t(2, 3))
	check(t_, "broadcast [2, D]", []int{m, d}, []int{0, 0}, err, "vector must be [3] or [1, 3]")
	m, d, err = RowBroadcastShape("Modulate", t(4, 3, 1), t(3))
	check(t_, "broadcast 3-D", []int{m, d}, []int{0, 0}, err, "x must be 2-D [M, D]")

	got, err = GatedAddShape(t(4, 3), t(4, 3), t(3))
	check(t_, "gated", got, []int{4, 3}, err, "")
	got, err = GatedAddShape(t(4, 3, 2), t(4, 3, 2), nil)
	check(t_, "gated nil gate", got, []int{4, 3, 2}, err, "")
	got, err = GatedAddShape(t(4, 3), t(4, 2), t(3))
	check(t_, "gated x y", got, []int{4, 3}, err, "x and y shapes differ")
	got, err = GatedAddShape(t(4, 3), t(4, 3), t(4))
	check(t_, "gated gate", got, []int{4, 3}, err, "vector must be [3] or [1, 3]")
	var se *ShapeError
	if errors.As(err, &se) && len(se.Shapes) != 3 {
		t_.Errorf("GatedAdd error lists %d shapes, want x, y and gate", len(se.Shapes))
	}
}

func TestLayoutShapes(t_ *testing.T) {
	type res struct {
		got []int
		err error
	}
	r := func(s []int, err error) res { return res{s, err} }
	for _, c := range []struct {
		name   string
		r      res
		want   []int
		reason string
	}{
		{"upsample", r(Upsample2xShape(t(2, 3, 4))), []int{2, 6, 8}, ""},
		{"upsample rank", r(Upsample2xShape(t(3, 4))), []int{3, 4}, "x must be [C, H, W]"},
		{"transpose", r(TransposeShape(t(2, 3))), []int{3, 2}, ""},
		{"transpose rank", r(TransposeShape(t(2, 3, 4))), []int{2, 3, 4}, "x must be 2-D"},
		{"embedding", r(EmbeddingShape(t(10, 4), []int{0, 9, 3})), []int{3, 4}, ""},
		{"embedding id", r(EmbeddingShape(t(10, 4), []int{0, 10})), []int{2, 4}, "id 10 at position 1 is outside the table's 10 rows"},
		{"embedding negative id", r(EmbeddingShape(t(10, 4), []int{-1})), []int{1, 4}, "id -1 at position 0"},
		{"embedding rank", r(EmbeddingShape(t(10), []int{0})), []int{1, 0}, "table must be [V, D]"},
		{"rows", r(RowsShape(t(5, 2, 3), 1, 4)), []int{3, 2, 3}, ""},
		{"rows empty", r(RowsShape(t(5, 2), 5, 5)), []int{0, 2}, ""},
		{"rows range", r(RowsShape(t(5, 2), 3, 6)), []int{3, 2}, "rows [3, 6) out of range"},
		{"rows reversed", r(RowsShape(t(5, 2), 3, 1)), []int{0, 2}, "rows [3, 1) out of range"},
		{"slice", r(SliceShape(t(5, 8), 2, 6)), []int{5, 4}, ""},
		{"slice range", r(SliceShape(t(5, 8), 2, 9)), []int{5, 7}, "columns [2, 9) out of range of a 2-D tensor"},
		{"slice rank", r(SliceShape(t(5, 8, 1), 0, 1)), []int{0, 1}, "of a 2-D tensor"},
		{"concat", r(ConcatShape(t(2, 3), t(4, 3))), []int{6, 3}, ""},
		{"concat none", r(ConcatShape()), []int{0}, "no tensors"},
		{"concat scalar", r(ConcatShape(t(), t())), []int{}, "at least one dimension"},
		{"concat ranks", r(ConcatShape(t(2, 3), t(4, 3, 1))), []int{6, 3}, "ranks differ"},
		{"concat trailing", r(ConcatShape(t(2, 3), t(4, 2))), []int{6, 3}, "trailing dimensions differ"},
		{"repeat [D]", r(RepeatShape(t(4), 3)), []int{3, 4}, ""},
		{"repeat [1, D]", r(RepeatShape(t(1, 4), 0)), []int{0, 4}, ""},
		{"repeat rows", r(RepeatShape(t(2, 4), 3)), []int{3, 4}, "row must be [D] or [1, D]"},
		{"repeat negative", r(RepeatShape(t(4), -2)), []int{0, 4}, "n ≥ 0 (n = -2)"},
		{"reshape", r(ReshapeShape(t(2, 6), []int{3, 4})), []int{3, 4}, ""},
		{"reshape count", r(ReshapeShape(t(2, 6), []int{5})), []int{5}, "cannot view 12 elements as [5]"},
		{"reshape negative", r(ReshapeShape(t(2, 6), []int{-3, -4})), []int{0, 0}, "negative dimension in [-3 -4]"},
	} {
		check(t_, c.name, c.r.got, c.want, c.r.err, c.reason)
	}
}

func TestShapeErrorMessage(t_ *testing.T) {
	_, err := MatMulShape(t(3, 4), t(5, 6), nil)
	want := "compute: MatMul: want x [M, K] and w [N, K] (shapes [[3 4] [5 6] []])"
	if err == nil || err.Error() != want {
		t_.Errorf("got %v, want %q", err, want)
	}
}

func TestHandleError(t_ *testing.T) {
	for _, c := range []struct {
		t    Tensor
		s    HandleState
		want string
	}{
		{t(2), HandleLive, ""},
		{nil, HandleForeign, "cpu: Add: nil tensor"},
		{t(2), HandleForeign, "cpu: Add: tensor of type compute.fake does not belong to the cpu backend"},
		{t(2), HandlePlaceholder, "cpu: Add: placeholder tensor (result of an op after an error)"},
		{t(2, 3), HandleFreed, "cpu: Add: use of a freed tensor [2 3]"},
	} {
		err := HandleError("cpu", "Add", c.t, c.s)
		if (err == nil) != (c.want == "") || (err != nil && err.Error() != c.want) {
			t_.Errorf("state %d: got %v, want %q", c.s, err, c.want)
		}
	}
}

// handle is a backend tensor type for the Handle and Operands tests.
type handle struct {
	s                  []int
	placeholder, freed bool
}

func (h *handle) Shape() []int                     { return h.s }
func (h *handle) DType() weights.DType             { return weights.F32 }
func (h *handle) state() (placeholder, freed bool) { return h.placeholder, h.freed }

func TestHandleAndOperands(t_ *testing.T) {
	live := &handle{s: []int{2, 3}}
	for _, c := range []struct {
		name string
		t    Tensor
		want string
	}{
		{"live", live, ""},
		{"nil", nil, "x: Op: nil tensor"},
		{"typed nil", (*handle)(nil), "x: Op: tensor of type *compute.handle does not belong to the x backend"},
		{"foreign", t(2), "x: Op: tensor of type compute.fake does not belong to the x backend"},
		{"placeholder", &handle{s: []int{1}, placeholder: true}, "x: Op: placeholder tensor (result of an op after an error)"},
		{"freed", &handle{s: []int{4}, freed: true}, "x: Op: use of a freed tensor [4]"},
	} {
		h, err := Handle("x", "Op", c.t, (*handle).state)
		if c.want == "" {
			if err != nil || h != live {
				t_.Errorf("%s: got %v, %v", c.name, h, err)
			}
		} else if err == nil || err.Error() != c.want || h != nil {
			t_.Errorf("%s: got %v, %v; want error %q", c.name, h, err, c.want)
		}
	}

	rule := errors.New("rule")
	hs, err := Operands("x", "Op", nil, (*handle).state, live, nil)
	if err != nil || len(hs) != 2 || hs[0] != live || hs[1] != nil {
		t_.Errorf("optional operand: got %v, %v", hs, err)
	}
	if _, err := Operands("x", "Op", rule, (*handle).state, live); err != rule {
		t_.Errorf("rule: got %v", err)
	}
	// An unusable operand is reported before the shape rule.
	if _, err := Operands("x", "Op", rule, (*handle).state, live, t(1)); err == rule || err == nil {
		t_.Errorf("foreign before rule: got %v", err)
	}
}
