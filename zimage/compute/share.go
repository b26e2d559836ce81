package compute

// MatMulSharer is an optional Backend interface for products of one input
// with several weights: the q, k, v projections of an attention, the w1, w3
// pair of a SwiGLU MLP. A backend computes them in one pass (the CPU
// backend packs x once and spreads every output's tiles over one parallel
// region). Each result equals MatMul(x, ws[i], nil) bit for bit; callers
// own and Free every returned tensor. Weights must share K (x's columns).
type MatMulSharer interface {
	MatMulShared(x Tensor, ws ...Tensor) []Tensor
}

// MatMulShared is x·wᵢᵀ for every wᵢ: one MatMulShared call where b has it,
// separate MatMul calls otherwise.
func MatMulShared(b Backend, x Tensor, ws ...Tensor) []Tensor {
	if s, ok := b.(MatMulSharer); ok {
		return s.MatMulShared(x, ws...)
	}
	out := make([]Tensor, len(ws))
	for i, w := range ws {
		out[i] = b.MatMul(x, w, nil)
	}
	return out
}
