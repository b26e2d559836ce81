package controlnet_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/controlnet"
)

// writeSkeleton writes a single file with the tensors InferConfig reads (at
// toy sizes): the embedder, nCtl control layers, nRef refiner blocks (with a
// before_proj of the given value when withProj).
func writeSkeleton(t *testing.T, dim, hd, cin, nCtl, nRef int, withProj bool, projVal byte) string {
	t.Helper()
	bf := func(name string, fill byte, shape ...int) *weights.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]byte, 2*n)
		for i := range data {
			data[i] = fill
		}
		return &weights.Tensor{Name: name, DType: weights.BF16, Shape: shape, Data: data}
	}
	ts := []*weights.Tensor{bf("control_all_x_embedder.2-1.weight", 0, dim, 4*cin)}
	for i := 0; i < nCtl; i++ {
		p := fmt.Sprintf("control_layers.%d.", i)
		ts = append(ts, bf(p+"attention_norm1.weight", 0, dim), bf(p+"attention.norm_q.weight", 0, hd))
	}
	for i := 0; i < nRef; i++ {
		p := fmt.Sprintf("control_noise_refiner.%d.", i)
		ts = append(ts, bf(p+"attention_norm1.weight", 0, dim))
		if withProj && i == 0 {
			ts = append(ts, bf(p+"before_proj.weight", projVal, dim, dim))
		}
	}
	path := filepath.Join(t.TempDir(), "cn.safetensors")
	if err := weights.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInferReleases: the released files' layouts (Union v1: 6 control
// layers + plain refiner blocks, control_in_dim 16; 2.0: 15 layers, zero
// before_proj; 2.1: 15 layers, trained before_proj; 2.1 lite: 3 layers) on
// a 30-layer DiT give the places and arrangements of their diffusers
// configs (ComfyUI's loader spreads the blocks the same way: every
// 30/N-th layer).
func TestInferReleases(t *testing.T) {
	d := weights.DefaultDiTConfig() // 30 layers, 2 refiners, patch 2
	d.Dim, d.NHeads = 64, 4
	for _, tc := range []struct {
		name      string
		nCtl, cin int
		proj      bool
		projVal   byte
		refiner   string
		places    []int
		refPlaces []int
	}{
		{"v1", 6, 16, false, 0, controlnet.RefinerNone, []int{0, 5, 10, 15, 20, 25}, nil},
		{"2.0", 15, 33, true, 0, controlnet.RefinerControlLayers, []int{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28}, []int{0, 1}},
		{"2.1", 15, 33, true, 0x3c, controlnet.RefinerControlNoiseRefiner, []int{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28}, []int{0, 1}},
		{"2.1-lite", 3, 33, true, 0x3c, controlnet.RefinerControlNoiseRefiner, []int{0, 10, 20}, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := weights.Open(writeSkeleton(t, 64, 16, tc.cin, tc.nCtl, 2, tc.proj, tc.projVal))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c, err := controlnet.InferConfig(s, d)
			if err != nil {
				t.Fatal(err)
			}
			if c.Refiner() != tc.refiner || !slices.Equal(c.ControlLayersPlaces, tc.places) ||
				!slices.Equal(c.ControlRefinerLayersPlaces, tc.refPlaces) || c.ControlInDim != tc.cin || c.NHeads != 4 || c.Dim != 64 {
				t.Errorf("inferred %+v (refiner %q)", c, c.Refiner())
			}
			if err := c.Check(d, 16); err != nil {
				t.Error(err)
			}
		})
	}
	// 7 control layers do not spread over 30 layers: a config.json is needed.
	s, err := weights.Open(writeSkeleton(t, 64, 16, 16, 7, 2, false, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := controlnet.InferConfig(s, d); err == nil {
		t.Error("7 control layers on 30: no error")
	}
}
