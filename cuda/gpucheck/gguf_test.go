//go:build gpu

package gpucheck

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/internal/tinygguf"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
)

var ggufTypes = []weights.DType{weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1, weights.Q8_0,
	weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K}

// f16Offsets are the byte offsets of each block type's f16 scales.
var f16Offsets = map[weights.DType][]int{
	weights.Q4_0: {0}, weights.Q4_1: {0, 2}, weights.Q5_0: {0}, weights.Q5_1: {0, 2}, weights.Q8_0: {0},
	weights.Q2_K: {80, 82}, weights.Q3_K: {108}, weights.Q4_K: {0, 2}, weights.Q5_K: {0, 2}, weights.Q6_K: {208},
}

// randomBlocks returns a [rows, cols] tensor of random block bytes with
// finite f16 scales.
func randomBlocks(t *testing.T, r *rand.Rand, dt weights.DType, rows, cols int) *weights.Tensor {
	n, ok := dt.TensorBytes([]int{rows, cols})
	if !ok {
		t.Fatalf("%v: %d columns", dt, cols)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for blk := 0; blk < len(data); blk += dt.BlockBytes() {
		for _, off := range f16Offsets[dt] {
			h := uint16(r.Uint32())
			if h>>10&0x1f == 0x1f {
				h &^= 0x400
			}
			binary.LittleEndian.PutUint16(data[blk+off:], h)
		}
	}
	return &weights.Tensor{Name: dt.String(), DType: dt, Shape: []int{rows, cols}, Data: data}
}

// TestGPUQuant checks the dequantization kernels (every ggml block type,
// f32 and bf16) bit for bit against weights.Dequantize on random blocks, a
// quantized MatMul against the same product on the host-expanded weight,
// and the fixture model converted to Q8_0 GGUF through the pipeline (PSNR
// against the safetensors model ≥ 40 dB, device memory below it).
func TestGPUQuant(t *testing.T) {
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := gpuBackend(t, cuda.Options{Precision: prec})
			to := weights.BF16
			if prec == cuda.F32 {
				to = weights.F32
			}
			r := rand.New(rand.NewPCG(7, uint64(prec)))
			for _, dt := range ggufTypes {
				w := randomBlocks(t, r, dt, 37, 4*dt.BlockSize()) // 37 rows: a ragged last grid block
				e, err := weights.DequantizeTo(w, to)
				if err != nil {
					t.Fatal(err)
				}
				want := make([]float32, e.NumElements())
				if err := e.DecodeF32(want); err != nil {
					t.Fatal(err)
				}
				hq := b.Weight(w)
				got := b.ToHost(hq)
				if err := b.Err(); err != nil {
					t.Fatalf("%v: %v", dt, err)
				}
				bad := 0
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						if bad == 0 {
							t.Errorf("%s %v: element %d = %g, want %g", prec, dt, i, got[i], want[i])
						}
						bad++
					}
				}
				// MatMul on the quantized weight against the expanded one.
				k := w.Shape[1]
				x := make([]float32, 64*k)
				for i := range x {
					x[i] = r.Float32()*2 - 1
				}
				hx, he := b.FromHost(x, 64, k), b.Weight(e)
				yq, ye := b.ToHost(b.MatMul(hx, hq, nil)), b.ToHost(b.MatMul(hx, he, nil))
				if err := b.Err(); err != nil {
					t.Fatalf("%v MatMul: %v", dt, err)
				}
				var num, den float64
				for i := range ye {
					d := float64(yq[i] - ye[i])
					num += d * d
					den += float64(ye[i]) * float64(ye[i])
				}
				rel := math.Sqrt(num / max(den, 1e-30))
				t.Logf("%s %v: dequant %d/%d values differ; MatMul rel L2 vs expanded weight %.2e", prec, dt, bad, len(want), rel)
				if rel > 1e-6 {
					t.Errorf("%s %v: quantized MatMul differs from the expanded weight's (rel L2 %.2e)", prec, dt, rel)
				}
				b.Free(hq, hx, he)
			}
		})
	}
	t.Run("pipeline-q8_0", func(t *testing.T) {
		c := fixturefs.E2ECases(t)[0]
		dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
		req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps}
		b := gpuBackend(t, cuda.Options{Precision: cuda.BF16})
		run := func(opts ...zimage.Option) ([]byte, uint64) {
			p, err := zimage.Load(context.Background(), dir, append(opts, zimage.WithBackend(b))...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			res, err := p.Run(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			return fixturefs.RGB(res.Image), b.CurrentBytes()
		}
		want, heldST := run()
		tmp := t.TempDir()
		dit, te := tinygguf.Write(t, tmp, weights.Q8_0)
		got, heldQ := run(zimage.WithSingleFiles(dit, te, "", ""))
		var se float64
		for i := range got {
			d := float64(got[i]) - float64(want[i])
			se += d * d
		}
		db := math.Inf(1)
		if se > 0 {
			db = 10 * math.Log10(255*255/(se/float64(len(got))))
		}
		t.Logf("Q8_0 GGUF on the GPU (bf16): PSNR %.2f dB vs the safetensors model; device bytes held after the run %d (safetensors %d, scratch %d)", db, heldQ, heldST, b.QuantScratchBytes())
		if db < 40 {
			t.Errorf("Q8_0 PSNR %.2f dB < 40", db)
		}
		if heldQ >= heldST {
			t.Errorf("the Q8_0 pipeline holds %d device bytes, not fewer than the safetensors one (%d)", heldQ, heldST)
		}
	})
}
