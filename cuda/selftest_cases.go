package cuda

import (
	"math"
	"math/rand/v2"
	"unsafe"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// strided is vae.Strided (the CPU and GPU backends' Downsample2D).
type strided interface {
	Downsample2D(x, w, bias compute.Tensor) compute.Tensor
}

// stCase is one self-test case: run builds its inputs with in and returns
// the op's output, on the GPU backend and on the CPU reference alike.
type stCase struct {
	name string
	run  func(b compute.Backend, in *stInputs) compute.Tensor
}

// stInputs hands out deterministic random tensors (values rounded to bf16,
// so both backends start from the same numbers in either precision) and
// remembers them for freeing.
type stInputs struct {
	rng  *rand.Rand
	b    compute.Backend
	made []compute.Tensor
}

func newSTInputs(b compute.Backend, seed uint64) *stInputs {
	return &stInputs{rng: rand.New(rand.NewPCG(seed, 0x5e1f)), b: b}
}

func (in *stInputs) vals(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = weights.BF16ToF32(weights.F32ToBF16(float32(in.rng.NormFloat64() * scale)))
	}
	return v
}

func (in *stInputs) keep(t compute.Tensor) compute.Tensor {
	in.made = append(in.made, t)
	return t
}

// act is an activation [shape] of standard deviation scale.
func (in *stInputs) act(scale float64, shape ...int) compute.Tensor {
	return in.keep(in.b.FromHost(in.vals(numel(shape), scale), shape...))
}

// weight is a checkpoint tensor in bf16 (or f32 when f32 is set).
func (in *stInputs) weight(f32 bool, scale float64, shape ...int) compute.Tensor {
	v := in.vals(numel(shape), scale)
	w := &weights.Tensor{Name: "selftest.weight", DType: weights.BF16, Shape: shape}
	if f32 {
		w.DType = weights.F32
		w.Data = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	} else {
		u := make([]byte, 2*len(v))
		for i, x := range v {
			h := weights.F32ToBF16(x)
			u[2*i], u[2*i+1] = byte(h), byte(h>>8)
		}
		w.Data = u
	}
	return in.keep(in.b.Weight(w))
}

// raw is a checkpoint tensor of n random finite values in dtype dt (F16 or
// one of the F8 formats), for the upload conversions.
func (in *stInputs) raw(dt weights.DType, n int) compute.Tensor {
	w := &weights.Tensor{Name: "selftest.raw", DType: dt, Shape: []int{n}}
	switch dt {
	case weights.F16:
		u := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			h := weights.F32ToF16(float32(in.rng.NormFloat64() * 3))
			u[2*i], u[2*i+1] = byte(h), byte(h>>8)
		}
		w.Data = u
	default: // F8: any byte but NaN (and ±Inf for e5m2)
		u := make([]byte, n)
		for i := range u {
			for {
				v := byte(in.rng.Uint32())
				if dt == weights.F8E4M3 && v&0x7f == 0x7f || dt == weights.F8E5M2 && v&0x7c == 0x7c {
					continue
				}
				u[i] = v
				break
			}
		}
		w.Data = u
	}
	return in.keep(in.b.Weight(w))
}

// quant is a checkpoint tensor [rows, cols] quantized to ggml block type dt
// from random values of standard deviation scale.
func (in *stInputs) quant(dt weights.DType, scale float64, rows, cols int) compute.Tensor {
	n, _ := dt.TensorBytes([]int{rows, cols})
	w := &weights.Tensor{Name: "selftest.quant", DType: dt, Shape: []int{rows, cols}, Data: make([]byte, n)}
	if err := weights.Quantize(w.Data, in.vals(rows*cols, scale), dt); err != nil {
		panic(err) // sizes are the cases' own
	}
	return in.keep(in.b.Weight(w))
}

// cosSin are rotation tables [l, half] of random angles.
func (in *stInputs) cosSin(l, half int) (compute.Tensor, compute.Tensor) {
	c, s := make([]float32, l*half), make([]float32, l*half)
	for i := range c {
		a := in.rng.Float64() * 2 * math.Pi
		c[i], s[i] = float32(math.Cos(a)), float32(math.Sin(a))
	}
	return in.keep(in.b.FromHost(c, l, half)), in.keep(in.b.FromHost(s, l, half))
}

// attn is one attention case: lq queries, lk keys, heads/kv heads of size
// dh.
func attn(lq, lk, heads, kv, dh int, causal bool) func(b compute.Backend, in *stInputs) compute.Tensor {
	return func(b compute.Backend, in *stInputs) compute.Tensor {
		q, k, v := in.act(1, lq, heads*dh), in.act(1, lk, kv*dh), in.act(1, lk, kv*dh)
		return b.Attention(q, k, v, heads, kv, 1/float32(math.Sqrt(float64(dh))), causal)
	}
}

// selfTestCases are each family's cases: small, with ragged edges (sizes
// that are not multiples of the block, tile or warp) and the real networks'
// widths where the kernel tiles them (3840 DiT, 2560 Qwen3, head size 128).
var selfTestCases = map[Family][]stCase{
	FamConvert: {
		{"roundtrip-1000", func(b compute.Backend, in *stInputs) compute.Tensor { return in.act(2, 1000) }},
		{"weight-f32", func(b compute.Backend, in *stInputs) compute.Tensor { return in.weight(true, 1, 333) }},
		{"weight-bf16", func(b compute.Backend, in *stInputs) compute.Tensor { return in.weight(false, 1, 3, 111) }},
		{"weight-f16", func(b compute.Backend, in *stInputs) compute.Tensor { return in.raw(weights.F16, 301) }},
		{"weight-f8e4m3", func(b compute.Backend, in *stInputs) compute.Tensor { return in.raw(weights.F8E4M3, 257) }},
		{"weight-f8e5m2", func(b compute.Backend, in *stInputs) compute.Tensor { return in.raw(weights.F8E5M2, 257) }},
	},
	FamGEMM: {
		{"matmul-13x96x40-bias", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.MatMul(in.act(1, 13, 96), in.weight(false, 0.1, 40, 96), in.weight(false, 1, 40))
		}},
		{"matmul-5x3840x72", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.MatMul(in.act(1, 5, 3840), in.weight(false, 0.02, 72, 3840), nil)
		}},
	},
	FamDequant: {
		{"matmul-q4_k-5x512x9", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.MatMul(in.act(1, 5, 512), in.quant(weights.Q4_K, 0.05, 9, 512), nil)
		}},
		{"matmul-q8_0-3x96x40-bias", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.MatMul(in.act(1, 3, 96), in.quant(weights.Q8_0, 0.1, 40, 96), in.weight(false, 1, 40))
		}},
		{"embedding-q6_k", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Embedding(in.quant(weights.Q6_K, 1, 7, 256), []int{6, 0, 3})
		}},
		// Every block type through ToHost (an expansion by its kernel).
		{"dequant-q4_0", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q4_0, 1, 3, 64) }},
		{"dequant-q4_1", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q4_1, 1, 3, 64) }},
		{"dequant-q5_0", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q5_0, 1, 3, 64) }},
		{"dequant-q5_1", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q5_1, 1, 3, 64) }},
		{"dequant-q2_k", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q2_K, 1, 3, 256) }},
		{"dequant-q3_k", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q3_K, 1, 3, 256) }},
		{"dequant-q5_k", func(b compute.Backend, in *stInputs) compute.Tensor { return in.quant(weights.Q5_K, 1, 3, 256) }},
	},
	FamElementwise: {
		{"silu-7x129", func(b compute.Backend, in *stInputs) compute.Tensor { return b.SiLU(in.act(3, 7, 129)) }},
		{"swiglu-5x300", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.SwiGLU(in.act(2, 5, 300), in.act(1, 5, 300))
		}},
		{"add-3x4x5", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Add(in.act(1, 3, 4, 5), in.act(1, 3, 4, 5))
		}},
		{"scale-1000", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Scale(in.act(1, 1000), 1/0.3611, 0.1159)
		}},
		{"modulate-3x3840", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Modulate(in.act(1, 3, 3840), in.act(0.5, 3840))
		}},
		{"gated-add-9x64", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.GatedAdd(in.act(1, 9, 64), in.act(1, 9, 64), in.weight(false, 1, 1, 64))
		}},
		{"upsample-3x5x7", func(b compute.Backend, in *stInputs) compute.Tensor { return b.Upsample2x(in.act(1, 3, 5, 7)) }},
		{"transpose-37x70", func(b compute.Backend, in *stInputs) compute.Tensor { return b.Transpose(in.act(1, 37, 70)) }},
		{"embedding", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Embedding(in.weight(false, 1, 50, 24), []int{3, 0, 49, 3, 17})
		}},
		{"repeat-slice", func(b compute.Backend, in *stInputs) compute.Tensor {
			r := in.keep(b.Repeat(in.weight(false, 1, 1, 40), 6))
			return b.Slice(r, 7, 33)
		}},
	},
	FamNorm: {
		{"rmsnorm-17x200", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.RMSNorm(in.act(3, 17, 200), in.weight(false, 1, 200), 1e-6)
		}},
		{"rmsnorm-3x3840", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.RMSNorm(in.act(3, 3, 3840), in.weight(false, 1, 3840), 1e-5)
		}},
		{"rmsnorm-heads-24x128", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.RMSNorm(in.act(2, 24, 128), nil, 1e-6)
		}},
		{"layernorm-3x3840", func(b compute.Backend, in *stInputs) compute.Tensor { return b.LayerNorm(in.act(2, 3, 3840), 1e-6) }},
		{"layernorm-11x96", func(b compute.Backend, in *stInputs) compute.Tensor { return b.LayerNorm(in.act(2, 11, 96), 1e-6) }},
	},
	FamRoPE: {
		{"rope-half-5x3x32", func(b compute.Backend, in *stInputs) compute.Tensor {
			c, s := in.cosSin(5, 16)
			return b.RoPE(in.act(1, 5, 3*32), c, s, 3, false)
		}},
		{"rope-interleaved-7x2x128", func(b compute.Backend, in *stInputs) compute.Tensor {
			c, s := in.cosSin(7, 64)
			return b.RoPE(in.act(1, 7, 2*128), c, s, 2, true)
		}},
	},
	FamGroupNorm: {
		{"groupnorm-64x9x7-g32", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.GroupNorm(in.act(2, 64, 9, 7), in.weight(true, 1, 64), in.weight(false, 1, 64), 32, 1e-6)
		}},
		{"groupnorm-chunks-8x48x48", func(b compute.Backend, in *stInputs) compute.Tensor {
			x := in.keep(b.Scale(in.act(1, 8, 48, 48), 1, 3)) // mean far from 0
			return b.GroupNorm(x, in.weight(true, 1, 8), in.weight(true, 1, 8), 2, 1e-6)
		}},
	},
	FamConv: {
		{"conv3x3-6x9x11", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Conv2D(in.act(1, 6, 9, 11), in.weight(false, 0.2, 5, 6, 3, 3), in.weight(false, 1, 5), 1)
		}},
		{"conv3x3-nopad", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Conv2D(in.act(1, 4, 8, 8), in.weight(true, 0.2, 3, 4, 3, 3), nil, 0)
		}},
		{"conv1x1-bias", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.Conv2D(in.act(1, 8, 6, 7), in.weight(false, 0.3, 12, 8, 1, 1), in.weight(false, 1, 12), 0)
		}},
	},
	FamConvStrided: {
		{"downsample-6x10x14-bias", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.(strided).Downsample2D(in.act(1, 6, 10, 14), in.weight(false, 0.2, 5, 6, 3, 3), in.weight(false, 1, 5))
		}},
		{"downsample-3x8x6", func(b compute.Backend, in *stInputs) compute.Tensor {
			return b.(strided).Downsample2D(in.act(1, 3, 8, 6), in.weight(true, 0.2, 4, 3, 3, 3), nil)
		}},
	},
	FamFusedNorm: {
		{"rmsnorm-modulate-3x3840", func(b compute.Backend, in *stInputs) compute.Tensor {
			return fused.RMSNormModulate(b, in.act(3, 3, 3840), in.weight(false, 1, 3840), in.act(0.5, 3840), 1e-5)
		}},
		{"rmsnorm-gated-add-7x96", func(b compute.Backend, in *stInputs) compute.Tensor {
			return fused.RMSNormGatedAdd(b, in.act(1, 7, 96), in.act(4, 7, 96), in.weight(false, 1, 96), in.weight(false, 1, 1, 96), 1e-5)
		}},
		{"add-rmsnorm-3x2560", func(b compute.Backend, in *stInputs) compute.Tensor {
			sum, norm := fused.AddRMSNorm(b, in.act(2, 3, 2560), in.act(1, 3, 2560), in.weight(false, 1, 2560), 1e-6)
			in.keep(sum)
			in.keep(norm)
			return b.Concat(sum, norm)
		}},
	},
	FamFusedHeadRoPE: {
		{"head-norm-rope-interleaved-5x3x48", func(b compute.Backend, in *stInputs) compute.Tensor {
			c, s := in.cosSin(5, 24)
			return fused.HeadRMSNormRoPE(b, in.act(2, 5, 3*48), in.weight(false, 1, 48), c, s, 3, 1e-5, true)
		}},
		{"head-norm-rope-half-4x2x128", func(b compute.Backend, in *stInputs) compute.Tensor {
			c, s := in.cosSin(4, 64)
			return fused.HeadRMSNormRoPE(b, in.act(2, 4, 2*128), in.weight(false, 1, 128), c, s, 2, 1e-6, false)
		}},
	},
	FamFusedGNSiLU: {
		{"groupnorm-silu-64x9x7", func(b compute.Backend, in *stInputs) compute.Tensor {
			return fused.GroupNormSiLU(b, in.act(2, 64, 9, 7), in.weight(true, 1, 64), in.weight(false, 1, 64), 32, 1e-6)
		}},
	},
	FamAttnGemm: {
		{"mha-19x23-d32", attn(19, 23, 3, 3, 32, false)},
		{"gqa-causal-21-d16", attn(21, 21, 4, 2, 16, true)},
		{"long-keys-5x1100-d16", attn(5, 1100, 2, 2, 16, false)},
		{"gqa-causal-70-d128", attn(70, 70, 4, 2, 128, true)},
	},
	FamAttnGeneric: {
		{"d20-13x29", attn(13, 29, 3, 3, 20, false)},
		{"d64-30", attn(30, 30, 1, 1, 64, false)},
		{"d128-gqa-causal-70", attn(70, 70, 4, 2, 128, true)},
		{"d640-20x33", attn(20, 33, 1, 1, 640, false)},
	},
	FamAttnTC128: {
		{"d128-gqa-causal-70", attn(70, 70, 4, 2, 128, true)},
		{"d128-130x129", attn(130, 129, 2, 2, 128, false)},
	},
	FamAttnTC256: {
		{"d256-gqa-33x45", attn(33, 45, 2, 1, 256, false)},
		{"d256-causal-37", attn(37, 37, 1, 1, 256, true)},
	},
	FamAttnTC512: {
		{"d512-40x70", attn(40, 70, 1, 1, 512, false)},
		{"d512-causal-37", attn(37, 37, 2, 2, 512, true)},
	},
}
