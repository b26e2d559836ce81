// Package parity holds the op-by-op parity cases of the CUDA backend against
// the CPU backend: the same random inputs on both, the outputs compared. The
// cases run on the fake GPU (host shim) in go test and on a real GPU in the
// GPU check.
package parity

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/vae"
)

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Case builds an op's inputs with in and returns its output.
type Case struct {
	Name string
	Run  func(b compute.Backend, in *Inputs) compute.Tensor
}

// Inputs hands out deterministic random tensors; the same call sequence on
// two backends yields the same values. Values are rounded to bf16 so both
// backends start from identical inputs in either precision.
type Inputs struct {
	rng *rand.Rand
	b   compute.Backend
}

func (in *Inputs) vals(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = weights.BF16ToF32(weights.F32ToBF16(float32(in.rng.NormFloat64() * scale)))
	}
	return v
}

func (in *Inputs) Act(scale float64, shape ...int) compute.Tensor {
	return in.b.FromHost(in.vals(numel(shape), scale), shape...)
}

// weight returns a checkpoint tensor in dtype dt.
func (in *Inputs) Weight(dt weights.DType, scale float64, shape ...int) compute.Tensor {
	v := in.vals(numel(shape), scale)
	w := &weights.Tensor{Name: "w", DType: dt, Shape: shape}
	switch dt {
	case weights.F32:
		w.Data = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	case weights.BF16:
		u := make([]uint16, len(v))
		for i, x := range v {
			u[i] = weights.F32ToBF16(x)
		}
		w.Data = unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), 2*len(u))
	default:
		panic(dt)
	}
	return in.b.Weight(w)
}

func cosSin(in *Inputs, l, half int) (compute.Tensor, compute.Tensor) {
	c, s := make([]float32, l*half), make([]float32, l*half)
	for i := range c {
		a := in.rng.Float64() * 2 * math.Pi
		c[i], s[i] = float32(math.Cos(a)), float32(math.Sin(a))
	}
	return in.b.FromHost(c, l, half), in.b.FromHost(s, l, half)
}

// Cases covers every op of compute.Backend on small random inputs.
var Cases = []Case{
	{"SiLU", func(b compute.Backend, in *Inputs) compute.Tensor { return b.SiLU(in.Act(3, 7, 129)) }},
	{"SwiGLU", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.SwiGLU(in.Act(2, 5, 300), in.Act(1, 5, 300))
	}},
	{"Add", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Add(in.Act(1, 3, 4, 5), in.Act(1, 3, 4, 5))
	}},
	{"Scale", func(b compute.Backend, in *Inputs) compute.Tensor { return b.Scale(in.Act(1, 1000), 1/0.3611, 0.1159) }},
	{"Modulate", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Modulate(in.Act(1, 9, 64), in.Act(0.5, 64))
	}},
	{"GatedAdd", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.GatedAdd(in.Act(1, 9, 64), in.Act(1, 9, 64), in.Weight(weights.BF16, 1, 1, 64))
	}},
	{"GatedAddNil", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.GatedAdd(in.Act(1, 4, 8), in.Act(1, 4, 8), nil)
	}},
	{"RMSNorm", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.RMSNorm(in.Act(3, 17, 200), in.Weight(weights.BF16, 1, 200), 1e-6)
	}},
	{"RMSNormHeads", func(b compute.Backend, in *Inputs) compute.Tensor {
		x := in.Act(2, 6, 4*32)
		return b.RMSNorm(b.Reshape(x, 6*4, 32), nil, 1e-5)
	}},
	{"LayerNorm", func(b compute.Backend, in *Inputs) compute.Tensor { return b.LayerNorm(in.Act(2, 11, 96), 1e-6) }},
	{"GroupNorm", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.GroupNorm(in.Act(2, 64, 9, 7), in.Weight(weights.F32, 1, 64), in.Weight(weights.BF16, 1, 64), 32, 1e-6)
	}},
	{"GroupNormChunks", func(b compute.Backend, in *Inputs) compute.Tensor {
		x := b.Scale(in.Act(1, 8, 48, 48), 1, 3) // mean far from 0
		return b.GroupNorm(x, in.Weight(weights.F32, 1, 8), in.Weight(weights.F32, 1, 8), 2, 1e-6)
	}},
	{"RoPEHalf", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 5, 16)
		return b.RoPE(in.Act(1, 5, 3*32), c, s, 3, false)
	}},
	{"RoPEInterleaved", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 5, 16)
		return b.RoPE(in.Act(1, 5, 3*32), c, s, 3, true)
	}},
	{"Upsample2x", func(b compute.Backend, in *Inputs) compute.Tensor { return b.Upsample2x(in.Act(1, 3, 5, 7)) }},
	{"Transpose", func(b compute.Backend, in *Inputs) compute.Tensor { return b.Transpose(in.Act(1, 37, 70)) }},
	{"Embedding", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Embedding(in.Weight(weights.BF16, 1, 50, 24), []int{3, 0, 49, 3, 17})
	}},
	{"Rows", func(b compute.Backend, in *Inputs) compute.Tensor { return b.Rows(in.Act(1, 10, 3, 4), 2, 7) }},
	{"Concat", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Concat(in.Act(1, 3, 16), in.Act(1, 5, 16), in.Weight(weights.BF16, 1, 2, 16))
	}},
	{"Repeat", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Repeat(in.Weight(weights.BF16, 1, 1, 40), 6)
	}},
	{"Slice", func(b compute.Backend, in *Inputs) compute.Tensor { return b.Slice(in.Act(1, 7, 50), 10, 33) }},
	{"SliceColumn", func(b compute.Backend, in *Inputs) compute.Tensor { return b.Slice(in.Act(1, 90, 2), 1, 2) }},
	{"VAEDownsample", func(b compute.Backend, in *Inputs) compute.Tensor { // encoder stride-2 conv
		return vae.Downsample(b, in.Act(1, 6, 10, 14), in.Weight(weights.BF16, 0.2, 6, 6, 3, 3), in.Weight(weights.BF16, 1, 6))
	}},
	{"MatMul", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.MatMul(in.Act(1, 13, 96), in.Weight(weights.BF16, 0.1, 40, 96), nil)
	}},
	{"MatMulBias", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.MatMul(in.Act(1, 13, 96), in.Weight(weights.F32, 0.1, 40, 96), in.Weight(weights.BF16, 1, 40))
	}},
	{"MatMulAct", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.MatMul(in.Act(1, 9, 32), in.Act(1, 20, 32), nil)
	}},
	{"Conv3x3", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Conv2D(in.Act(1, 6, 9, 11), in.Weight(weights.BF16, 0.2, 5, 6, 3, 3), in.Weight(weights.BF16, 1, 5), 1)
	}},
	{"Conv3x3NoPad", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Conv2D(in.Act(1, 4, 8, 8), in.Weight(weights.F32, 0.2, 3, 4, 3, 3), nil, 0)
	}},
	{"Conv1x1", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Conv2D(in.Act(1, 8, 6, 7), in.Weight(weights.BF16, 0.3, 12, 8, 1, 1), in.Weight(weights.BF16, 1, 12), 0)
	}},
	// The encoder's stride-2 conv (vae.Strided on both backends): odd output
	// sizes, one output row.
	{"Downsample", func(b compute.Backend, in *Inputs) compute.Tensor {
		return vae.Downsample(b, in.Act(1, 6, 10, 14), in.Weight(weights.BF16, 0.2, 5, 6, 3, 3), in.Weight(weights.BF16, 1, 5))
	}},
	{"DownsampleNoBias", func(b compute.Backend, in *Inputs) compute.Tensor {
		return vae.Downsample(b, in.Act(1, 3, 2, 18), in.Weight(weights.F32, 0.2, 4, 3, 3, 3), nil)
	}},
	{"AttentionMHA", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 19, 3*32), in.Act(1, 23, 3*32), in.Act(1, 23, 3*32), 3, 3, 1/float32(math.Sqrt(32)), false)
	}},
	{"AttentionCausalGQA", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 21, 4*16), in.Act(1, 21, 2*16), in.Act(1, 21, 2*16), 4, 2, 0.25, true)
	}},
	{"AttentionLongKeys", func(b compute.Backend, in *Inputs) compute.Tensor { // block-per-row softmax
		return b.Attention(in.Act(1, 5, 2*16), in.Act(1, 1100, 2*16), in.Act(1, 1100, 2*16), 2, 2, 0.25, false)
	}},
	{"AttentionLongKeysCausal", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 4, 16), in.Act(1, 1100, 16), in.Act(1, 1100, 16), 1, 1, 0.25, true)
	}},
	{"AttentionOneHead", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 30, 64), in.Act(1, 30, 64), in.Act(1, 30, 64), 1, 1, 0.125, false)
	}},
	{"AttentionHead20", func(b compute.Backend, in *Inputs) compute.Tensor { // head size not a multiple of 32
		return b.Attention(in.Act(1, 13, 3*20), in.Act(1, 29, 3*20), in.Act(1, 29, 3*20), 3, 3, 0.2, false)
	}},
	// Head sizes of the tensor-core kernels (bf16 on a GPU): 128 (DiT, Qwen3),
	// 256 and 512 (VAE mid-block, split-d), ragged lengths.
	{"AttentionD128CausalGQA", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 70, 4*128), in.Act(1, 70, 2*128), in.Act(1, 70, 2*128), 4, 2, 1/float32(math.Sqrt(128)), true)
	}},
	{"AttentionD256GQA", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 33, 2*256), in.Act(1, 45, 256), in.Act(1, 45, 256), 2, 1, 1/float32(math.Sqrt(256)), false)
	}},
	{"AttentionD512", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 40, 512), in.Act(1, 70, 512), in.Act(1, 70, 512), 1, 1, 1/float32(math.Sqrt(512)), false)
	}},
	{"AttentionD512Causal", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 37, 2*512), in.Act(1, 37, 2*512), in.Act(1, 37, 2*512), 2, 2, 1/float32(math.Sqrt(512)), true)
	}},
	{"AttentionD640", func(b compute.Backend, in *Inputs) compute.Tensor { // two 512-dim output chunks
		return b.Attention(in.Act(1, 20, 640), in.Act(1, 33, 640), in.Act(1, 33, 640), 1, 1, 1/float32(math.Sqrt(640)), false)
	}},
	// Fused chains (package cuda/fused): the CUDA backend's fused kernels
	// against the CPU backend's op sequence.
	{"FusedRMSNormModulate", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.RMSNormModulate(b, in.Act(3, 9, 200), in.Weight(weights.BF16, 1, 200), in.Act(0.5, 200), 1e-6)
	}},
	{"FusedRMSNormModulateNoScale", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.RMSNormModulate(b, in.Act(3, 9, 70), in.Weight(weights.BF16, 1, 70), nil, 1e-6)
	}},
	{"FusedRMSNormGatedAdd", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.RMSNormGatedAdd(b, in.Act(1, 7, 96), in.Act(4, 7, 96), in.Weight(weights.BF16, 1, 96), in.Weight(weights.BF16, 1, 1, 96), 1e-5)
	}},
	{"FusedRMSNormGatedAddNoGate", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.RMSNormGatedAdd(b, in.Act(1, 7, 96), in.Act(4, 7, 96), in.Weight(weights.F32, 1, 96), nil, 1e-5)
	}},
	{"FusedAddRMSNorm", func(b compute.Backend, in *Inputs) compute.Tensor {
		sum, norm := fused.AddRMSNorm(b, in.Act(2, 6, 130), in.Act(1, 6, 130), in.Weight(weights.BF16, 1, 130), 1e-6)
		out := b.Concat(sum, norm)
		b.Free(sum, norm)
		return out
	}},
	{"FusedHeadRMSNormRoPEInterleaved", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 5, 24)
		return fused.HeadRMSNormRoPE(b, in.Act(2, 5, 3*48), in.Weight(weights.BF16, 1, 48), c, s, 3, 1e-5, true)
	}},
	{"FusedHeadRMSNormRoPEHalf", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 4, 64)
		return fused.HeadRMSNormRoPE(b, in.Act(2, 4, 2*128), in.Weight(weights.BF16, 1, 128), c, s, 2, 1e-6, false)
	}},
	{"FusedHeadRMSNormRoPENoGain", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 3, 8)
		return fused.HeadRMSNormRoPE(b, in.Act(2, 3, 4*16), nil, c, s, 4, 1e-6, true)
	}},
	{"FusedGroupNormSiLU", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.GroupNormSiLU(b, in.Act(2, 64, 9, 7), in.Weight(weights.F32, 1, 64), in.Weight(weights.BF16, 1, 64), 32, 1e-6)
	}},
}

// Compare returns the max absolute error relative to the reference's max
// magnitude, and the relative L2 error.
func Compare(got, want []float32) (maxRel, l2 float64) {
	var scale, num, den, maxErr float64
	for i := range want {
		scale = math.Max(scale, math.Abs(float64(want[i])))
		d := float64(got[i]) - float64(want[i])
		maxErr = math.Max(maxErr, math.Abs(d))
		if math.IsNaN(d) {
			maxErr = math.Inf(1)
		}
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return maxErr / math.Max(scale, 1e-30), math.Sqrt(num / math.Max(den, 1e-30))
}

// Tolerances: F32 max error ≤ 1e-5 of the output's scale and relative L2
// ≤ 1e-5; BF16 relative L2 ≤ 1e-2 (max error ≤ 5e-2).
func Tolerances(bf16 bool) (maxRel, l2 float64) {
	if bf16 {
		return 5e-2, 1e-2
	}
	return 1e-5, 1e-5
}

// Run runs cases on b and on the CPU backend and compares. bf16 selects the
// tolerances; the caller's backend must report errors through Err.
func Run(t *testing.T, b compute.Backend, bf16 bool, cases []Case) {
	ref := cpu.New()
	tolMax, tolL2 := Tolerances(bf16)
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			seed := uint64(i + 1)
			want := ref.ToHost(c.Run(ref, &Inputs{rng: rand.New(rand.NewPCG(seed, 7)), b: ref}))
			if err := ref.Err(); err != nil {
				t.Fatalf("cpu: %v", err)
			}
			out := c.Run(b, &Inputs{rng: rand.New(rand.NewPCG(seed, 7)), b: b})
			got := b.ToHost(out)
			if err := b.Err(); err != nil {
				b.ResetErr()
				t.Fatalf("%s: %v", b.Name(), err)
			}
			if len(got) != len(want) {
				t.Fatalf("shape %v, %d values; want %d", out.Shape(), len(got), len(want))
			}
			maxRel, l2 := Compare(got, want)
			t.Logf("max error %.3g, rel L2 %.3g", maxRel, l2)
			if maxRel > tolMax || l2 > tolL2 {
				t.Errorf("max error %.3g (tol %.0g), rel L2 %.3g (tol %.0g)", maxRel, tolMax, l2, tolL2)
			}
			ref.Free(out)
		})
	}
}

// NewInputs returns an input source for b seeded with seed (for callers that
// compare two device paths with each other).
func NewInputs(b compute.Backend, seed uint64) *Inputs {
	return &Inputs{rng: rand.New(rand.NewPCG(seed, 7)), b: b}
}

// LargeCases use the networks' real widths (GPU check only: the CPU
// reference takes seconds).
var LargeCases = []Case{
	{"MatMulDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.MatMul(in.Act(1, 300, 3840), in.Weight(weights.BF16, 0.02, 3840, 3840), in.Weight(weights.BF16, 1, 3840))
	}},
	{"MatMulFFN", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.MatMul(in.Act(1, 257, 3840), in.Weight(weights.F32, 0.02, 10240, 3840), nil)
	}},
	{"RMSNormDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.RMSNorm(in.Act(3, 4224, 3840), in.Weight(weights.BF16, 1, 3840), 1e-5)
	}},
	{"AttentionDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 600, 30*128), in.Act(1, 600, 30*128), in.Act(1, 600, 30*128), 30, 30, 1/float32(math.Sqrt(128)), false)
	}},
	{"AttentionQwen3", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 100, 32*128), in.Act(1, 100, 8*128), in.Act(1, 100, 8*128), 32, 8, 1/float32(math.Sqrt(128)), true)
	}},
	{"AttentionVAE", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Attention(in.Act(1, 1024, 512), in.Act(1, 1024, 512), in.Act(1, 1024, 512), 1, 1, 1/float32(math.Sqrt(512)), false)
	}},
	{"GroupNormVAE", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.GroupNorm(in.Act(2, 256, 128, 128), in.Weight(weights.BF16, 1, 256), in.Weight(weights.BF16, 1, 256), 32, 1e-6)
	}},
	{"Conv3x3VAE", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Conv2D(in.Act(1, 128, 64, 64), in.Weight(weights.BF16, 0.03, 128, 128, 3, 3), in.Weight(weights.BF16, 1, 128), 1)
	}},
	{"DownsampleVAE", func(b compute.Backend, in *Inputs) compute.Tensor { // encoder level 1 at 256²
		return vae.Downsample(b, in.Act(1, 128, 128, 128), in.Weight(weights.BF16, 0.03, 128, 128, 3, 3), in.Weight(weights.BF16, 1, 128))
	}},
	{"Conv1x1VAE", func(b compute.Backend, in *Inputs) compute.Tensor {
		return b.Conv2D(in.Act(1, 256, 96, 80), in.Weight(weights.BF16, 0.06, 128, 256, 1, 1), in.Weight(weights.BF16, 1, 128), 0)
	}},
	{"RoPEDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 4224, 64)
		return b.RoPE(in.Act(1, 4224, 30*128), c, s, 30, true)
	}},
	{"AttentionVAE4096", func(b compute.Backend, in *Inputs) compute.Tensor { // VAE mid-block at 512²
		return b.Attention(in.Act(1, 4096, 512), in.Act(1, 4096, 512), in.Act(1, 4096, 512), 1, 1, 1/float32(math.Sqrt(512)), false)
	}},
	{"FusedRMSNormModulateDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.RMSNormModulate(b, in.Act(3, 4224, 3840), in.Weight(weights.BF16, 1, 3840), in.Act(0.5, 3840), 1e-5)
	}},
	{"FusedRMSNormGatedAddDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.RMSNormGatedAdd(b, in.Act(1, 4224, 3840), in.Act(3, 4224, 3840), in.Weight(weights.BF16, 1, 3840), in.Act(1, 3840), 1e-5)
	}},
	{"FusedHeadRMSNormRoPEDiT", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 4224, 64)
		return fused.HeadRMSNormRoPE(b, in.Act(2, 4224, 30*128), in.Weight(weights.BF16, 1, 128), c, s, 30, 1e-5, true)
	}},
	{"FusedHeadRMSNormRoPEQwen3", func(b compute.Backend, in *Inputs) compute.Tensor {
		c, s := cosSin(in, 100, 64)
		return fused.HeadRMSNormRoPE(b, in.Act(2, 100, 32*128), in.Weight(weights.BF16, 1, 128), c, s, 32, 1e-6, false)
	}},
	{"FusedAddRMSNormQwen3", func(b compute.Backend, in *Inputs) compute.Tensor {
		sum, norm := fused.AddRMSNorm(b, in.Act(4, 100, 2560), in.Act(1, 100, 2560), in.Weight(weights.BF16, 1, 2560), 1e-6)
		out := b.Concat(sum, norm)
		b.Free(sum, norm)
		return out
	}},
	{"FusedGroupNormSiLUVAE", func(b compute.Backend, in *Inputs) compute.Tensor {
		return fused.GroupNormSiLU(b, in.Act(2, 256, 128, 128), in.Weight(weights.BF16, 1, 256), in.Weight(weights.BF16, 1, 256), 32, 1e-6)
	}},
}
