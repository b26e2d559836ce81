package cuda

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Family is a group of hand-written kernels that the self-test checks
// together and the dispatch can turn off as one (selftest.go). Every family
// but FamConvert and FamGEMM has a fallback.
type Family string

// The kernel families, in the order the self-test checks them: a family's
// cases only use families checked before it (or their fallbacks).
const (
	// FamConvert: uploads and downloads with their dtype conversions
	// (zk_cvt_*). Everything else depends on them: no fallback; a failure
	// makes the device unusable (New fails, WithDevice("auto") takes the
	// CPU).
	FamConvert Family = "convert"
	// FamGEMM: cuBLASLt products (MatMul), the reference of the other
	// checks. No fallback.
	FamGEMM Family = "gemm"
	// FamDequant: the dequantization kernels of ggml block-quantized
	// weights (zk_dequant_*, quant.go). Fallback: quantized weights are
	// expanded to bf16 on the host when a layer is bound
	// (compute.ExpandQuantized); it applies to weights bound after the
	// family is turned off.
	FamDequant Family = "dequant"
	// FamElementwise: SiLU, SwiGLU, Add, Scale, Modulate, GatedAdd,
	// Upsample2x, Transpose, Embedding, Repeat, Slice (zk_silu_* ...,
	// zk_copy2d_*, zk_gather_*). Fallback: the op on the host (CPU backend).
	FamElementwise Family = "elementwise"
	// FamNorm: RMSNorm and LayerNorm row kernels. Fallback: host.
	FamNorm Family = "norm"
	// FamRoPE: zk_rope_*. Fallback: host.
	FamRoPE Family = "rope"
	// FamGroupNorm: zk_gn_stats_*, zk_gn_apply_* (without the SiLU).
	// Fallback: host.
	FamGroupNorm Family = "groupnorm"
	// FamConv: the convolution helpers zk_im2col_*, zk_chan_bias_*.
	// Fallback: the convolution on the host.
	FamConv Family = "conv"
	// FamConvStrided: the VAE encoder's stride-2 downsample conv
	// (zk_im2col_s2_*, downsample.go). Fallback: the stride-1 conv keeping
	// the odd rows and columns (4× the work, same result).
	FamConvStrided Family = "conv-strided"
	// FamFusedNorm: zk_rmsnorm_ex_* (RMSNormModulate, RMSNormGatedAdd,
	// AddRMSNorm). Fallback: the unfused op sequence.
	FamFusedNorm Family = "fused-rmsnorm"
	// FamFusedHeadRoPE: zk_head_norm_rope_*. Fallback: RMSNorm then RoPE.
	FamFusedHeadRoPE Family = "fused-head-norm-rope"
	// FamFusedGNSiLU: GroupNormSiLU (zk_gn_apply_* with the activation).
	// Fallback: GroupNorm then SiLU.
	FamFusedGNSiLU Family = "fused-groupnorm-silu"
	// FamAttnGemm: attention as cuBLASLt GEMMs and a row softmax
	// (zk_softmax_*). Fallback: attention on the host.
	FamAttnGemm Family = "attention-gemm"
	// FamAttnGeneric: the generic fused attention kernel (zk_flash_attn_*).
	// Fallback: attention-gemm.
	FamAttnGeneric Family = "attention-generic"
	// FamAttnTC128, FamAttnTC256, FamAttnTC512: the tensor-core attention
	// kernels by head size (bf16). Fallback: attention-generic (or -gemm).
	FamAttnTC128 Family = "attention-tc-d128"
	FamAttnTC256 Family = "attention-tc-d256"
	FamAttnTC512 Family = "attention-tc-d512"
)

func (f Family) String() string { return string(f) }

// Families lists every family in self-test order.
var Families = []Family{FamConvert, FamGEMM, FamDequant, FamElementwise, FamNorm, FamRoPE, FamGroupNorm, FamConv,
	FamConvStrided, FamFusedNorm, FamFusedHeadRoPE, FamFusedGNSiLU, FamAttnGemm, FamAttnGeneric, FamAttnTC128, FamAttnTC256, FamAttnTC512}

// Fallback says what runs instead of f once it is disabled ("" when
// nothing does: the device is unusable).
func (f Family) Fallback() string {
	switch f {
	case FamConvert, FamGEMM:
		return ""
	case FamFusedNorm, FamFusedHeadRoPE, FamFusedGNSiLU:
		return "unfused op sequence"
	case FamAttnTC128, FamAttnTC256, FamAttnTC512:
		return "generic fused attention (or GEMM attention)"
	case FamAttnGeneric:
		return "GEMM attention"
	case FamAttnGemm:
		return "attention on the host (CPU backend)"
	case FamDequant:
		return "quantized weights expanded to bf16 on the host"
	case FamConvStrided:
		return "stride-1 convolution keeping odd rows and columns"
	}
	return "the op on the host (CPU backend)"
}

// tcFamily is the family of the tensor-core kernel for head size d.
func tcFamily(d int) Family {
	switch d {
	case 128:
		return FamAttnTC128
	case 256:
		return FamAttnTC256
	case 512:
		return FamAttnTC512
	}
	return ""
}

// families is the backend's table of disabled families; the dispatch asks
// it before using a kernel of a family.
type families struct {
	mu  sync.Mutex
	off map[Family]bool
}

// on reports whether family f may be used.
func (b *Backend) on(f Family) bool {
	b.fam.mu.Lock()
	defer b.fam.mu.Unlock()
	return !b.fam.off[f]
}

// setFamily turns family f on or off.
func (b *Backend) setFamily(f Family, on bool) {
	b.fam.mu.Lock()
	defer b.fam.mu.Unlock()
	if b.fam.off == nil {
		b.fam.off = map[Family]bool{}
	}
	if on {
		delete(b.fam.off, f)
	} else {
		b.fam.off[f] = true
	}
}

// Disabled returns the families turned off (by the self-test or
// DisableFamily), in self-test order.
func (b *Backend) Disabled() []Family {
	var out []Family
	for _, f := range Families {
		if !b.on(f) {
			out = append(out, f)
		}
	}
	return out
}

// DisableFamily turns family f off for the life of the backend: its ops
// take the family's fallback (comparisons, workarounds).
func (b *Backend) DisableFamily(f Family) error {
	if !slices.Contains(Families, f) {
		return fmt.Errorf("cuda: unknown kernel family %q", f)
	}
	if f.Fallback() == "" {
		return fmt.Errorf("cuda: kernel family %q has no fallback", f)
	}
	b.setFamily(f, false)
	return nil
}

// hostBackend is the CPU backend of the host fallbacks, made on first use.
func (b *Backend) hostBackend() *cpu.Backend {
	b.hostOnce.Do(func() { b.hostCPU = cpu.New() })
	return b.hostCPU
}

// onHost runs an op whose kernel family is disabled on the host: the
// operands (nil stays nil) are downloaded, fn computes the result with the
// CPU backend, and the result is uploaded. Slow (two transfers per op) but
// it relies only on the conversion kernels and the CPU backend.
func (b *Backend) onHost(op string, fn func(c compute.Backend, in []compute.Tensor) compute.Tensor, ts ...compute.Tensor) compute.Tensor {
	if b.failed() {
		return b.placeholder(shapeOf(firstNonNil(ts))...)
	}
	c := b.hostBackend()
	in := make([]compute.Tensor, len(ts))
	var made []compute.Tensor
	defer func() { c.Free(made...) }()
	for i, t := range ts {
		if t == nil {
			continue
		}
		x := b.get(op, t)
		if x == nil {
			return b.placeholder(shapeOf(firstNonNil(ts))...)
		}
		v := b.ToHost(x)
		if b.failed() {
			return b.placeholder(x.shape...)
		}
		in[i] = c.FromHost(v, slices.Clone(x.shape)...)
		made = append(made, in[i])
	}
	out := fn(c, in)
	if err := c.Err(); err != nil {
		c.ResetErr()
		b.setErr(fmt.Errorf("cuda: %s (on the host): %w", op, err))
		return b.placeholder(shapeOf(out)...)
	}
	made = append(made, out)
	return b.FromHost(c.ToHost(out), slices.Clone(out.Shape())...)
}

func firstNonNil(ts []compute.Tensor) compute.Tensor {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

// disableFamilies applies Options.Disable and, with the system driver,
// ZIMAGE_CUDA_DISABLE (comma-separated family names).
func (b *Backend) disableFamilies(o Options) error {
	fams := slices.Clone(o.Disable)
	if env := os.Getenv("ZIMAGE_CUDA_DISABLE"); env != "" && o.Driver == nil {
		for _, f := range strings.Split(env, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fams = append(fams, Family(f))
			}
		}
	}
	for _, f := range fams {
		if err := b.DisableFamily(f); err != nil {
			return err
		}
		b.log.Info("cuda: kernel family disabled by the caller", "family", f, "fallback", f.Fallback())
	}
	return nil
}
