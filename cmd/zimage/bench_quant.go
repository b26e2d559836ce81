package main

import (
	"encoding/binary"
	"math"
	"math/rand/v2"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// deviceKeepsQuant reports whether backend b holds weights of type qt in
// their blocks (compute.QuantWeights).
func deviceKeepsQuant(b compute.Backend, qt weights.DType) bool {
	q, ok := b.(compute.QuantWeights)
	return ok && q.WeightQuantized(qt)
}

// ggufScaleFields are the byte offsets of the f16 scale fields (d, and the
// min scale where the type has one) in one block of each quantized type.
var ggufScaleFields = map[weights.DType][]int{
	weights.Q4_0: {0}, weights.Q5_0: {0}, weights.Q8_0: {0},
	weights.Q4_1: {0, 2}, weights.Q5_1: {0, 2},
	weights.Q2_K: {80, 82}, weights.Q3_K: {108}, weights.Q4_K: {0, 2}, weights.Q5_K: {0, 2}, weights.Q6_K: {208},
}

// fillRandomQuant is fillRandom with the tensors a GGUF conversion to qt
// would quantize stored as random blocks of qt: random quants and sub-block
// scales, the f16 scales set so that the values have the standard deviation
// fillRandom gives (1/sqrt(fan-in)). Generating blocks directly keeps a
// Turbo-size DiT at its quantized size in memory.
func fillRandomQuant(s *synthetic.Source, seed uint64, qt weights.DType) randomSource {
	out := randomSource{}
	for i, name := range s.Names() {
		t, _ := s.Tensor(name)
		dt := weights.GGUFTensorType(name, t, qt)
		if !dt.IsQuantized() {
			out[name] = fillRandomOne(name, t, seed, i)
			continue
		}
		n := t.NumElements()
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		bb := dt.BlockBytes()
		data := make([]byte, n/dt.BlockSize()*bb)
		for j := 0; j+8 <= len(data); j += 8 {
			binary.LittleEndian.PutUint64(data[j:], rng.Uint64())
		}
		for j := len(data) &^ 7; j < len(data); j++ {
			data[j] = byte(rng.Uint32())
		}
		fanIn := max(n/max(t.Shape[0], 1), 1)
		scale := blockScale(dt) / float32(math.Sqrt(float64(fanIn)))
		h := weights.F32ToF16(scale)
		for off := 0; off < len(data); off += bb {
			for _, f := range ggufScaleFields[dt] {
				binary.LittleEndian.PutUint16(data[off+f:], h)
			}
		}
		out[name] = &weights.Tensor{Name: name, DType: dt, Shape: t.Shape, Data: data}
	}
	return out
}

// blockScale is the f16 scale that makes random blocks of dt have unit
// standard deviation (measured on random blocks with scale 1).
func blockScale(dt weights.DType) float32 {
	rng := rand.New(rand.NewPCG(1, 1))
	bs, bb := dt.BlockSize(), dt.BlockBytes()
	blk := make([]byte, bb)
	v := make([]float32, bs)
	var ss float64
	const blocks = 64
	for range blocks {
		for j := range blk {
			blk[j] = byte(rng.Uint32())
		}
		for _, f := range ggufScaleFields[dt] {
			binary.LittleEndian.PutUint16(blk[f:], weights.F32ToF16(1))
		}
		weights.DequantBlock(dt)(v, blk)
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
	}
	return float32(1 / math.Sqrt(ss/float64(blocks*bs)))
}

// fillRandomOne is fillRandom for a single tensor (bf16), tensor i of the
// list: norm gains 1 ± 0.05, biases and pad tokens ±0.02.
func fillRandomOne(name string, t *weights.Tensor, seed uint64, i int) *weights.Tensor {
	data := synthetic.RandomBF16(t, seed<<32|uint64(i), synthetic.Scales{Gain: 0.05, Bias: 0.02, Pad: 0.02})
	return &weights.Tensor{Name: name, DType: weights.BF16, Shape: t.Shape, Data: data}
}
