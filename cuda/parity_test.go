package cuda

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
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

// TestParityBF16 runs every case in bf16; attention of head size 128, 256
// and 512 dispatches to the tensor-core kernels, which run on the host shim
// through its emulation of ldmatrix, mma.sync and cp.async.
func TestParityBF16(t *testing.T) {
	b, _, _ := newFake(t, BF16, true)
	runParity(t, b, parity.Cases)
}

// TestParityWarpsAhead runs every case with one warp at a time running ahead
// (hostshim.WarpLast) and deferred cp.async copies, which exposes missing
// barriers around shared memory in any kernel.
func TestParityWarpsAhead(t *testing.T) {
	for _, prec := range []Precision{F32, BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b, f, _ := newFake(t, prec, true)
			shimMode(t, f.Shim, func(l *hostshim.Lib) {
				l.SetSchedule(hostshim.WarpLast)
				l.SetDeferredCopies(true)
			})
			runParity(t, b, parity.Cases)
		})
	}
}

// attentionCases returns the attention cases of parity.Cases.
func attentionCases() []parity.Case {
	var cs []parity.Case
	for _, c := range parity.Cases {
		if strings.HasPrefix(c.Name, "Attention") {
			cs = append(cs, c)
		}
	}
	return cs
}

// TestParityAttentionModes runs the attention cases through the generic
// fused kernel (every head size, both precisions) and the GEMM path.
func TestParityAttentionModes(t *testing.T) {
	for _, mode := range []string{"generic", "gemm"} {
		for _, prec := range []Precision{F32, BF16} {
			t.Run(mode+"-"+prec.String(), func(t *testing.T) {
				b, _, _ := newFake(t, prec, true, func(o *Options, _ *fakecuda.Fake) { o.Attention = mode })
				runParity(t, b, attentionCases())
			})
		}
	}
}

// TestParityFlashDispatch runs bf16 attention of head sizes 128, 256 and 512,
// which dispatches to the tensor-core kernels, both on the host shim (the
// kernel source, PTX helpers emulated) and as the fake's independent Go
// model of the kernels' contract; the fake checks every launch's shape.
// On the shim the kernels run under every thread schedule and with cp.async
// copies landing either at once or only when the issuing thread waits for
// them: a kernel that reads a tile before its wait and barrier sees poisoned
// shared memory (deferred), one that overwrites a tile another warp still
// reads computes garbage (eager copies with a warp running ahead).
func TestParityFlashDispatch(t *testing.T) {
	for _, sched := range []hostshim.Schedule{hostshim.Lockstep, hostshim.WarpFirst, hostshim.WarpLast} {
		for _, deferred := range []bool{false, true} {
			t.Run(fmt.Sprintf("shim-schedule%d-deferred=%v", sched, deferred), func(t *testing.T) {
				testFlashDispatch(t, false, func(l *hostshim.Lib) {
					l.SetSchedule(sched)
					l.SetDeferredCopies(deferred)
				})
			})
		}
	}
	t.Run("go-model", func(t *testing.T) { testFlashDispatch(t, true, nil) })
}

// shimMode runs the rest of the test with the shim's schedule and copy mode
// set by set, and restores the defaults at the end.
func shimMode(t *testing.T, l *hostshim.Lib, set func(*hostshim.Lib)) {
	if set == nil {
		return
	}
	set(l)
	t.Cleanup(func() {
		l.SetSchedule(hostshim.Lockstep)
		l.SetDeferredCopies(false)
	})
}

func testFlashDispatch(t *testing.T, emulate bool, set func(*hostshim.Lib)) {
	b, f, _ := newFake(t, BF16, true, func(_ *Options, f *fakecuda.Fake) { f.EmulateFlash = emulate })
	shimMode(t, f.Shim, set)
	if !b.flash || len(b.tc) != 3 {
		t.Fatalf("tensor-core attention enabled for %v in bf16", slices.Sorted(maps.Keys(b.tc)))
	}
	f.Record = true
	runParity(t, b, []parity.Case{
		{Name: "CausalGQA128", Run: func(b compute.Backend, in *parity.Inputs) compute.Tensor {
			return b.Attention(in.Act(1, 70, 4*128), in.Act(1, 70, 2*128), in.Act(1, 70, 2*128), 4, 2, 1/float32(math.Sqrt(128)), true)
		}},
		{Name: "MHA128", Run: func(b compute.Backend, in *parity.Inputs) compute.Tensor {
			return b.Attention(in.Act(1, 65, 3*128), in.Act(1, 40, 3*128), in.Act(1, 40, 3*128), 3, 3, 1/float32(math.Sqrt(128)), false)
		}},
		{Name: "GQA256", Run: func(b compute.Backend, in *parity.Inputs) compute.Tensor {
			return b.Attention(in.Act(1, 33, 4*256), in.Act(1, 50, 2*256), in.Act(1, 50, 2*256), 4, 2, 1/float32(math.Sqrt(256)), false)
		}},
		{Name: "VAE512", Run: func(b compute.Backend, in *parity.Inputs) compute.Tensor {
			return b.Attention(in.Act(1, 100, 512), in.Act(1, 100, 512), in.Act(1, 100, 512), 1, 1, 1/float32(math.Sqrt(512)), false)
		}},
	})
	n := map[string]int{}
	for _, l := range f.Launches {
		if strings.HasPrefix(l.Kernel, "zk_tc_") {
			if !l.Executed {
				t.Errorf("%s launch not executed", l.Kernel)
			}
			n[l.Kernel]++
		}
	}
	want := map[string]int{"zk_tc_flash_attn_bf16_d128": 2, "zk_tc_flash_attn_bf16_d256": 1, "zk_tc_flash_attn_bf16_d512": 1}
	if !maps.Equal(n, want) {
		t.Errorf("tensor-core launches %v, want %v", n, want)
	}
}

// TestParityChunked shrinks the im2col and score budgets so that convolution
// and attention run in several chunks.
func TestParityChunked(t *testing.T) {
	oc, os := colBudget, scoreBudget
	colBudget, scoreBudget = 6*9*4*13, 4*3*23*5
	defer func() { colBudget, scoreBudget = oc, os }()
	b, _, _ := newFake(t, F32, true, func(o *Options, _ *fakecuda.Fake) { o.Attention = "gemm" })
	var cases []parity.Case
	for _, c := range parity.Cases {
		switch c.Name {
		case "Conv3x3", "AttentionMHA", "AttentionCausalGQA":
			cases = append(cases, c)
		}
	}
	runParity(t, b, cases)
}

// TestAttentionDispatch checks which kernel each precision, mode and head
// size runs, and the launch shape of the generic kernel.
func TestAttentionDispatch(t *testing.T) {
	cases := []struct {
		mode string
		prec Precision
		dh   int
		want string
	}{
		{"", BF16, 128, "zk_tc_flash_attn_bf16_d128"},
		{"", BF16, 256, "zk_tc_flash_attn_bf16_d256"},
		{"auto", BF16, 512, "zk_tc_flash_attn_bf16_d512"},
		{"", BF16, 64, "zk_flash_attn_bf16"},
		{"", F32, 128, "zk_flash_attn_f32"},
		{"", F32, 1000, "zk_flash_attn_f32"},
		{"generic", BF16, 512, "zk_flash_attn_bf16"},
		{"gemm", BF16, 128, "zk_softmax_warp_bf16"},
		{"", F32, 4096, "zk_softmax_warp_f32"}, // too wide for the generic kernel's shared memory
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%s-%d", c.mode, c.prec, c.dh), func(t *testing.T) {
			b, f, _ := newFake(t, c.prec, false, func(o *Options, f *fakecuda.Fake) {
				o.Attention = c.mode
				f.EmulateFlash = true
			})
			const heads, lq, lk = 2, 21, 9
			q := b.FromHost(make([]float32, lq*heads*c.dh), lq, heads*c.dh)
			kv := b.FromHost(make([]float32, lk*heads*c.dh), lk, heads*c.dh)
			f.Record = true
			b.Attention(q, kv, kv, heads, heads, 0.1, false)
			if err := b.Err(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range f.Launches {
				got = append(got, l.Kernel)
				if l.Kernel == c.want && strings.HasPrefix(l.Kernel, "zk_flash_attn_") {
					wantGrid := [3]uint32{(lq + 15) / 16, heads, uint32((c.dh + 511) / 512)}
					if l.Grid != wantGrid || l.Block != [3]uint32{128, 1, 1} || l.Smem != uint32(genericSmem(c.dh)) {
						t.Errorf("generic launch grid %v block %v smem %d", l.Grid, l.Block, l.Smem)
					}
				}
			}
			if !slices.Contains(got, c.want) {
				t.Errorf("launched %v, want %s", got, c.want)
			}
		})
	}
}

// TestAttentionOptInFailure: a tensor-core kernel whose shared-memory opt-in
// fails (as on a GPU with too little shared memory) is left out and its head
// size runs the generic kernel.
func TestAttentionOptInFailure(t *testing.T) {
	b, f, _ := newFake(t, BF16, false, func(_ *Options, f *fakecuda.Fake) {
		f.API.FuncSetAttribute = func(_ driver.Function, _ driver.FuncAttribute, v int32) driver.Result {
			if v > 64<<10 {
				return driver.ErrInvalidValue
			}
			return driver.Success
		}
	})
	if b.tc[512] != nil || b.tc[128] == nil || b.tc[256] == nil {
		t.Fatalf("tensor-core kernels enabled for head sizes %v", slices.Sorted(maps.Keys(b.tc)))
	}
	if b.genericSmemMax != 48<<10 {
		t.Errorf("generic kernel shared-memory limit %d, want 48 KiB after failed opt-ins", b.genericSmemMax)
	}
	f.Record = true
	x := b.FromHost(make([]float32, 3*512), 3, 512)
	b.Attention(x, x, x, 1, 1, 0.1, false)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Launches); n == 0 || f.Launches[n-1].Kernel != "zk_flash_attn_bf16" {
		t.Errorf("launches %v", f.Launches)
	}
}

// TestGenericOptInMinusReserved: when the full opt-in limit is refused (the
// block's reserved 1 KiB counted against it), the generic kernel takes 1 KiB
// less.
func TestGenericOptInMinusReserved(t *testing.T) {
	b, _, _ := newFake(t, F32, false, func(_ *Options, f *fakecuda.Fake) {
		f.API.FuncSetAttribute = func(_ driver.Function, _ driver.FuncAttribute, v int32) driver.Result {
			if v >= 227<<10 {
				return driver.ErrInvalidValue
			}
			return driver.Success
		}
	})
	if b.genericSmemMax != 226<<10 {
		t.Errorf("generic kernel shared-memory limit %d, want 226 KiB", b.genericSmemMax)
	}
}
