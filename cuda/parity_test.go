package cuda

import (
	"math"
	"testing"

	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/parity"
	"github.com/zimage/zimage/zimage/compute"
)

// Op parity: every op of the CUDA backend, its kernels run on the CPU through
// the host shim and its GEMMs through the fake cuBLASLt, against the CPU
// backend on random inputs (cases in internal/parity; the same cases run on
// a real GPU in cuda/gpucheck under -tags gpu).

func runParity(t *testing.T, b *Backend, cases []parity.Case) {
	parity.Run(t, b, b.Precision() == BF16, cases)
}

func TestParityF32(t *testing.T) {
	b, _, _ := newFake(t, F32, true)
	runParity(t, b, parity.Cases)
}

func TestParityBF16(t *testing.T) {
	b, _, _ := newFake(t, BF16, true)
	runParity(t, b, parity.Cases)
}

// TestParityFlashDispatch runs head-size-128 attention in bf16, which
// dispatches to the fused tensor-core kernel (emulated in Go by the fake: the
// host shim cannot run inline PTX), and checks the result and the launch.
func TestParityFlashDispatch(t *testing.T) {
	b, f, _ := newFake(t, BF16, true, func(_ *Options, f *fakecuda.Fake) { f.EmulateFlash = true })
	if !b.flash {
		t.Fatal("fused attention not selected in bf16")
	}
	f.Record = true
	runParity(t, b, []parity.Case{
		{Name: "CausalGQA128", Run: func(b compute.Backend, in *parity.Inputs) compute.Tensor {
			return b.Attention(in.Act(1, 70, 4*128), in.Act(1, 70, 2*128), in.Act(1, 70, 2*128), 4, 2, 1/float32(math.Sqrt(128)), true)
		}},
		{Name: "MHA128", Run: func(b compute.Backend, in *parity.Inputs) compute.Tensor {
			return b.Attention(in.Act(1, 65, 3*128), in.Act(1, 40, 3*128), in.Act(1, 40, 3*128), 3, 3, 1/float32(math.Sqrt(128)), false)
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
	var cases []parity.Case
	for _, c := range parity.Cases {
		switch c.Name {
		case "Conv3x3", "AttentionMHA", "AttentionCausalGQA":
			cases = append(cases, c)
		}
	}
	runParity(t, b, cases)
}
