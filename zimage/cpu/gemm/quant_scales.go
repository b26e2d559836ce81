package gemm

import "github.com/zimage/zimage/weights"

// quantScaleFloats is the size of one block's scale table of the panel
// kernels (gen_quant.go: tables × groups × 16 rows), 0 for other dtypes.
func quantScaleFloats(dt weights.DType) int {
	switch dt {
	case weights.Q8_0, weights.Q4_0, weights.Q5_0:
		return 16
	case weights.Q4_1, weights.Q5_1:
		return 2 * 16
	case weights.Q2_K:
		return 2 * 16 * 16
	case weights.Q3_K, weights.Q6_K:
		return 16 * 16
	case weights.Q4_K, weights.Q5_K:
		return 2 * 8 * 16
	}
	return 0
}
