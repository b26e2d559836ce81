package weights

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// ConvertOption configures Convert.
type ConvertOption func(*convertConfig)

type convertConfig struct {
	shardSize int64
	log       *slog.Logger
	ctx       context.Context
}

// WithShardSize makes Convert split its output into shards of at most n bytes
// of tensor data (a larger tensor gets a shard of its own), named like the
// diffusers/transformers writers: for dst "dir/model.safetensors" the shards
// are "dir/model-00001-of-0000N.safetensors" and the index
// "dir/model.safetensors.index.json". n ≤ 0 (the default) writes one file.
// If everything fits in one shard, the single file dst is written.
func WithShardSize(n int64) ConvertOption { return func(c *convertConfig) { c.shardSize = n } }

// WithLogger makes Convert report progress (one Debug record per tensor, one
// Info record per output file) to l.
func WithLogger(l *slog.Logger) ConvertOption { return func(c *convertConfig) { c.log = l } }

// WithContext lets Convert stop early; the partial output is removed.
func WithContext(ctx context.Context) ConvertOption { return func(c *convertConfig) { c.ctx = ctx } }

// convertChunk is the number of elements converted per step: it bounds the
// scratch memory (4 MiB of float32 plus at most 4 MiB of output) whatever
// the tensor sizes.
const convertChunk = 1 << 20

// Convert rewrites the tensors of src (a safetensors file, a shard index or a
// component directory, as for Open) into dst with every float tensor
// converted to dtype to (BF16, F16 or F32, rounding to nearest even);
// integer tensors are copied unchanged and "__metadata__" is kept. Tensors are
// written in name order, streamed chunk by chunk from the source mapping, so
// memory stays bounded by a few MiB whatever the checkpoint size. Each output
// file is written to name.tmp and renamed into place when complete.
func Convert(src, dst string, to DType, opts ...ConvertOption) error {
	cfg := convertConfig{log: slog.New(slog.DiscardHandler), ctx: context.Background()}
	for _, o := range opts {
		o(&cfg)
	}
	switch to {
	case BF16, F16, F32:
	default:
		return &DTypeError{DType: to, Op: "convert (want BF16, F16 or F32)"}
	}
	s, err := Open(src)
	if err != nil {
		return err
	}
	defer s.Close()

	// Scratch buffers shared by all tensors: written sequentially.
	f32 := make([]float32, convertChunk)
	out := make([]byte, convertChunk*to.Size())
	var plan []outTensor
	for _, name := range s.Names() {
		t, _ := s.Tensor(name)
		odt := t.DType
		if odt.IsFloat() || odt.IsQuantized() { // GGUF blocks are dequantized
			odt = to
		}
		size := int64(t.NumElements()) * int64(odt.Size())
		plan = append(plan, outTensor{name: name, dtype: odt, shape: t.Shape, size: size,
			write: func(w io.Writer) error { return convertTensor(cfg, w, t, odt, f32, out) }})
	}

	groups := [][]outTensor{plan}
	if cfg.shardSize > 0 {
		groups = shardPlan(plan, cfg.shardSize)
	}
	meta := s.Metadata()
	if len(groups) == 1 {
		cfg.log.Info("weights: converting", "src", src, "dst", dst, "to", to.String(), "tensors", len(plan))
		return writeSafetensors(dst, plan, meta)
	}

	base := strings.TrimSuffix(dst, ".safetensors")
	index := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{Metadata: map[string]int64{"total_size": 0}, WeightMap: map[string]string{}}
	var written []string
	for i, g := range groups {
		name := fmt.Sprintf("%s-%05d-of-%05d.safetensors", base, i+1, len(groups))
		cfg.log.Info("weights: converting shard", "src", src, "dst", name, "to", to.String(), "tensors", len(g))
		if err := writeSafetensors(name, g, meta); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return err
		}
		written = append(written, name)
		for _, t := range g {
			index.WeightMap[t.name] = filepath.Base(name)
			index.Metadata["total_size"] += t.size
		}
	}
	js, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("weights: convert: %w", err)
	}
	idxPath := dst + ".index.json"
	if err := os.WriteFile(idxPath+".tmp", append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("weights: convert: %w", err)
	}
	if err := os.Rename(idxPath+".tmp", idxPath); err != nil {
		return fmt.Errorf("weights: convert: %w", err)
	}
	return nil
}

// shardPlan splits tensors greedily, in order, into groups of at most max
// data bytes (a tensor larger than max forms its own group).
func shardPlan(plan []outTensor, max int64) [][]outTensor {
	var groups [][]outTensor
	var cur []outTensor
	var size int64
	for _, t := range plan {
		if len(cur) > 0 && size+t.size > max {
			groups = append(groups, cur)
			cur, size = nil, 0
		}
		cur = append(cur, t)
		size += t.size
	}
	if len(cur) > 0 || len(groups) == 0 {
		groups = append(groups, cur)
	}
	return groups
}

// convertTensor streams t into w as dtype odt, chunk by chunk, then drops the
// source pages from the resident set.
func convertTensor(cfg convertConfig, w io.Writer, t *Tensor, odt DType, f32 []float32, out []byte) error {
	defer release(t.Data)
	cfg.log.Debug("weights: tensor", "name", t.Name, "from", t.DType.String(), "to", odt.String(), "shape", t.Shape)
	// Chunks are whole storage blocks (convertChunk is a multiple of every
	// block size; a quantized tensor's length is a whole number of blocks).
	bs, bb := t.DType.BlockSize(), t.DType.BlockBytes()
	n := t.NumElements()
	for i := 0; i < n; i += convertChunk {
		if err := cfg.ctx.Err(); err != nil {
			return err
		}
		m := min(convertChunk, n-i)
		src := t.Data[i/bs*bb : (i+m)/bs*bb]
		if odt == t.DType {
			if _, err := w.Write(src); err != nil {
				return err
			}
			continue
		}
		if err := DecodeF32(f32[:m], src, t.DType); err != nil {
			return err
		}
		o := out[:m*odt.Size()]
		switch odt {
		case BF16:
			EncodeBF16(o, f32[:m])
		case F16:
			EncodeF16(o, f32[:m])
		case F32:
			EncodeF32(o, f32[:m])
		}
		if _, err := w.Write(o); err != nil {
			return err
		}
	}
	return nil
}
