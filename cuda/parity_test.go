package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Op parity: every op of the CUDA backend, its kernels run on the CPU through
// the host shim and its GEMMs through the fake cuBLASLt, against the CPU
// backend on random inputs. F32: max error ≤ 1e-5 relative to the output's
// scale. BF16: relative L2 error ≤ 1e-2. (The same cases run on a real GPU
// under -tags gpu; see gpu_test.go.)

// parityCase builds an op's inputs with in and returns its output.
type parityCase struct {
	name string
	run  func(b compute.Backend, in *inputs) compute.Tensor
}

// inputs hands out deterministic random tensors; the same call sequence on
// two backends yields the same values. Values are rounded to bf16 so both
// backends start from identical inputs in either precision.
type inputs struct {
	rng *rand.Rand
	b   compute.Backend
}

func (in *inputs) vals(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = weights.BF16ToF32(weights.F32ToBF16(float32(in.rng.NormFloat64() * scale)))
	}
	return v
}

func (in *inputs) act(scale float64, shape ...int) compute.Tensor {
	return in.b.FromHost(in.vals(numel(shape), scale), shape...)
}

// weight returns a checkpoint tensor in dtype dt.
func (in *inputs) weight(dt weights.DType, scale float64, shape ...int) compute.Tensor {
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

func cosSin(in *inputs, l, half int) (compute.Tensor, compute.Tensor) {
	c, s := make([]float32, l*half), make([]float32, l*half)
	for i := range c {
		a := in.rng.Float64() * 2 * math.Pi
		c[i], s[i] = float32(math.Cos(a)), float32(math.Sin(a))
	}
	return in.b.FromHost(c, l, half), in.b.FromHost(s, l, half)
}

var parityCases = []parityCase{
	{"SiLU", func(b compute.Backend, in *inputs) compute.Tensor { return b.SiLU(in.act(3, 7, 129)) }},
	{"SwiGLU", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.SwiGLU(in.act(2, 5, 300), in.act(1, 5, 300))
	}},
	{"Add", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Add(in.act(1, 3, 4, 5), in.act(1, 3, 4, 5))
	}},
	{"Scale", func(b compute.Backend, in *inputs) compute.Tensor { return b.Scale(in.act(1, 1000), 1/0.3611, 0.1159) }},
	{"Modulate", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Modulate(in.act(1, 9, 64), in.act(0.5, 64))
	}},
	{"GatedAdd", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.GatedAdd(in.act(1, 9, 64), in.act(1, 9, 64), in.weight(weights.BF16, 1, 1, 64))
	}},
	{"GatedAddNil", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.GatedAdd(in.act(1, 4, 8), in.act(1, 4, 8), nil)
	}},
	{"RMSNorm", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.RMSNorm(in.act(3, 17, 200), in.weight(weights.BF16, 1, 200), 1e-6)
	}},
	{"RMSNormHeads", func(b compute.Backend, in *inputs) compute.Tensor {
		x := in.act(2, 6, 4*32)
		return b.RMSNorm(b.Reshape(x, 6*4, 32), nil, 1e-5)
	}},
	{"LayerNorm", func(b compute.Backend, in *inputs) compute.Tensor { return b.LayerNorm(in.act(2, 11, 96), 1e-6) }},
	{"GroupNorm", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.GroupNorm(in.act(2, 64, 9, 7), in.weight(weights.F32, 1, 64), in.weight(weights.BF16, 1, 64), 32, 1e-6)
	}},
	{"GroupNormChunks", func(b compute.Backend, in *inputs) compute.Tensor {
		x := b.Scale(in.act(1, 8, 48, 48), 1, 3) // mean far from 0
		return b.GroupNorm(x, in.weight(weights.F32, 1, 8), in.weight(weights.F32, 1, 8), 2, 1e-6)
	}},
	{"RoPEHalf", func(b compute.Backend, in *inputs) compute.Tensor {
		c, s := cosSin(in, 5, 16)
		return b.RoPE(in.act(1, 5, 3*32), c, s, 3, false)
	}},
	{"RoPEInterleaved", func(b compute.Backend, in *inputs) compute.Tensor {
		c, s := cosSin(in, 5, 16)
		return b.RoPE(in.act(1, 5, 3*32), c, s, 3, true)
	}},
	{"Upsample2x", func(b compute.Backend, in *inputs) compute.Tensor { return b.Upsample2x(in.act(1, 3, 5, 7)) }},
	{"Transpose", func(b compute.Backend, in *inputs) compute.Tensor { return b.Transpose(in.act(1, 37, 70)) }},
	{"Embedding", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Embedding(in.weight(weights.BF16, 1, 50, 24), []int{3, 0, 49, 3, 17})
	}},
	{"Rows", func(b compute.Backend, in *inputs) compute.Tensor { return b.Rows(in.act(1, 10, 3, 4), 2, 7) }},
	{"Concat", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Concat(in.act(1, 3, 16), in.act(1, 5, 16), in.weight(weights.BF16, 1, 2, 16))
	}},
	{"Repeat", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Repeat(in.weight(weights.BF16, 1, 1, 40), 6)
	}},
	{"Slice", func(b compute.Backend, in *inputs) compute.Tensor { return b.Slice(in.act(1, 7, 50), 10, 33) }},
	{"MatMul", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.MatMul(in.act(1, 13, 96), in.weight(weights.BF16, 0.1, 40, 96), nil)
	}},
	{"MatMulBias", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.MatMul(in.act(1, 13, 96), in.weight(weights.F32, 0.1, 40, 96), in.weight(weights.BF16, 1, 40))
	}},
	{"MatMulAct", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.MatMul(in.act(1, 9, 32), in.act(1, 20, 32), nil)
	}},
	{"Conv3x3", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Conv2D(in.act(1, 6, 9, 11), in.weight(weights.BF16, 0.2, 5, 6, 3, 3), in.weight(weights.BF16, 1, 5), 1)
	}},
	{"Conv3x3NoPad", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Conv2D(in.act(1, 4, 8, 8), in.weight(weights.F32, 0.2, 3, 4, 3, 3), nil, 0)
	}},
	{"Conv1x1", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Conv2D(in.act(1, 8, 6, 7), in.weight(weights.BF16, 0.3, 12, 8, 1, 1), in.weight(weights.BF16, 1, 12), 0)
	}},
	{"AttentionMHA", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Attention(in.act(1, 19, 3*32), in.act(1, 23, 3*32), in.act(1, 23, 3*32), 3, 3, 1/float32(math.Sqrt(32)), false)
	}},
	{"AttentionCausalGQA", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Attention(in.act(1, 21, 4*16), in.act(1, 21, 2*16), in.act(1, 21, 2*16), 4, 2, 0.25, true)
	}},
	{"AttentionOneHead", func(b compute.Backend, in *inputs) compute.Tensor {
		return b.Attention(in.act(1, 30, 64), in.act(1, 30, 64), in.act(1, 30, 64), 1, 1, 0.125, false)
	}},
}

// compare returns the max absolute error relative to the reference's max
// magnitude, and the relative L2 error.
func compare(got, want []float32) (maxRel, l2 float64) {
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

func runParity(t *testing.T, b *Backend, cases []parityCase) {
	ref := cpu.New(cpu.WithThreads(1))
	tolMax, tolL2 := 1e-5, 1e-5
	if b.Precision() == BF16 {
		tolMax, tolL2 = 5e-2, 1e-2
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seed := uint64(i + 1)
			want := ref.ToHost(c.run(ref, &inputs{rng: rand.New(rand.NewPCG(seed, 7)), b: ref}))
			if err := ref.Err(); err != nil {
				t.Fatalf("cpu: %v", err)
			}
			out := c.run(b, &inputs{rng: rand.New(rand.NewPCG(seed, 7)), b: b})
			got := b.ToHost(out)
			if err := b.Err(); err != nil {
				b.ResetErr()
				t.Fatalf("cuda: %v", err)
			}
			if fmt.Sprint(out.Shape()) != fmt.Sprint(shapeOf(out)) || len(got) != len(want) {
				t.Fatalf("shape %v, %d values; want %d", out.Shape(), len(got), len(want))
			}
			maxRel, l2 := compare(got, want)
			if maxRel > tolMax || l2 > tolL2 {
				t.Errorf("max error %.3g (tol %.0g), rel L2 %.3g (tol %.0g)", maxRel, tolMax, l2, tolL2)
			}
		})
	}
}

func TestParityF32(t *testing.T) {
	b, _, _ := newFake(t, F32, true)
	runParity(t, b, parityCases)
}

func TestParityBF16(t *testing.T) {
	b, _, _ := newFake(t, BF16, true)
	runParity(t, b, parityCases)
}

// TestParityFlashDispatch runs the head-size-128 attention of both networks'
// shapes in bf16, which dispatches to the fused tensor-core kernel (emulated
// in Go by the fake: the host shim cannot run inline PTX), and checks the
// result and the launch.
func TestParityFlashDispatch(t *testing.T) {
	b, f, _ := newFake(t, BF16, true, func(_ *Options, f *fakecuda.Fake) { f.EmulateFlash = true })
	if !b.flash {
		t.Fatal("fused attention not selected in bf16")
	}
	f.Record = true
	runParity(t, b, []parityCase{
		{"CausalGQA128", func(b compute.Backend, in *inputs) compute.Tensor {
			return b.Attention(in.act(1, 70, 4*128), in.act(1, 70, 2*128), in.act(1, 70, 2*128), 4, 2, 1/float32(math.Sqrt(128)), true)
		}},
		{"MHA128", func(b compute.Backend, in *inputs) compute.Tensor {
			return b.Attention(in.act(1, 65, 3*128), in.act(1, 40, 3*128), in.act(1, 40, 3*128), 3, 3, 1/float32(math.Sqrt(128)), false)
		}},
	})
	n := 0
	for _, l := range f.Launches {
		if l.Kernel == "zk_tc_flash_attn_bf16_d128" {
			if !l.Executed {
				t.Error("flash launch not executed")
			}
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d fused attention launches, want 2", n)
	}
}

// TestParityChunked shrinks the im2col and score budgets so that convolution
// and attention run in several chunks.
func TestParityChunked(t *testing.T) {
	oc, os := colBudget, scoreBudget
	colBudget, scoreBudget = 6*9*4*13, 4*3*23*5
	defer func() { colBudget, scoreBudget = oc, os }()
	b, _, _ := newFake(t, F32, true)
	var cases []parityCase
	for _, c := range parityCases {
		switch c.name {
		case "Conv3x3", "AttentionMHA", "AttentionCausalGQA":
			cases = append(cases, c)
		}
	}
	runParity(t, b, cases)
}
