package qwen3_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/internal/nn"
	"github.com/zimage/zimage/zimage/qwen3"
)

func load(t *testing.T) (*qwen3.Encoder, compute.Backend) {
	return fixture.LoadTiny(t, "text_encoder", weights.DefaultQwen3Config(), qwen3.New)
}

// TestEncodeFixtures checks every hidden state the encoder computes and the
// prompt embedding against the reference for every case (rel_l2 ≤ 1e-5,
// max_rel ≤ 2e-5).
func TestEncodeFixtures(t *testing.T) {
	e, b := load(t)
	fx := fixture.Open(t, "fixtures/text_encoder.safetensors")
	layers := e.Config().NumHiddenLayers
	for _, id := range []string{"en", "zh", "mixed", "empty", "long_truncated"} {
		t.Run(id, func(t *testing.T) {
			ids := fx.I64(t, id+"/input_ids")
			mask := fx.I64(t, id+"/attention_mask")
			n := 0
			for _, m := range mask {
				n += m
			}
			got := map[string][]float32{}
			out, err := e.Encode(context.Background(), ids[:n], func(name string, x compute.Tensor) {
				got[name] = b.ToHost(x)
			})
			if err != nil {
				t.Fatal(err)
			}
			// hidden_states.0 .. N-1 are computed; N (final norm of the last layer) is not.
			for k := 0; k < layers; k++ {
				name := fmt.Sprintf("hidden_states.%d", k)
				fixture.Check(t, name, got[name], fx.F32(t, id+"/"+name), fixture.TextEncoder)
			}
			s := fixture.Check(t, "prompt_embeds", out, fx.F32(t, id+"/prompt_embeds"), fixture.TextEncoder)
			t.Logf("%s: %d tokens, prompt_embeds rel_l2 %.2g max_rel %.2g", id, n, s.RelL2, s.MaxRel)
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	e, _ := load(t)
	if _, err := e.Encode(context.Background(), nil, nil); err == nil {
		t.Error("no ids: want an error")
	}
	var idErr *qwen3.IDError
	if _, err := e.Encode(context.Background(), []int{1, 200000}, nil); !errors.As(err, &idErr) || idErr.Index != 1 {
		t.Errorf("out-of-vocabulary id: got %v, want *IDError at index 1", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Encode(ctx, []int{1, 2, 3}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	cfg := weights.DefaultQwen3Config()
	src := fixture.TinyComponent(t, "text_encoder", &cfg)
	b := cpu.New()

	bad := cfg
	bad.NumKeyValueHeads = 3
	var ce *qwen3.ConfigError
	if _, err := qwen3.New(b, bad, src); !errors.As(err, &ce) {
		t.Errorf("bad kv heads: got %v, want *ConfigError", err)
	}
	bad = cfg
	bad.IntermediateSize++
	var te *nn.TensorError
	if _, err := qwen3.New(b, bad, src); !errors.As(err, &te) || te.Name != "model.layers.0.mlp.gate_proj.weight" {
		t.Errorf("wrong intermediate size: got %v, want a *TensorError naming gate_proj", err)
	}
	drop := dropSource{src, "model.layers.1.self_attn.k_norm.weight"}
	if _, err := qwen3.New(b, cfg, drop); !errors.As(err, &te) || te.Name != drop.name {
		t.Errorf("missing tensor: got %v", err)
	}
}

type dropSource struct {
	nn.Source
	name string
}

func (d dropSource) Tensor(name string) (*weights.Tensor, bool) {
	if name == d.name {
		return nil, false
	}
	return d.Source.Tensor(name)
}
