package qwen3_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/internal/nn"
	"github.com/zimage/zimage/zimage/qwen3"
)

// weightCounter counts the weight handles a backend holds at once.
type weightCounter struct {
	compute.Backend
	live      map[compute.Tensor]bool
	cur, peak int
}

func (w *weightCounter) Weight(t *weights.Tensor) compute.Tensor {
	h := w.Backend.Weight(t)
	w.live[h] = true
	w.cur++
	w.peak = max(w.peak, w.cur)
	return h
}

func (w *weightCounter) Free(ts ...compute.Tensor) {
	for _, t := range ts {
		if w.live[t] {
			delete(w.live, t)
			w.cur--
		}
	}
	w.Backend.Free(ts...)
}

func source(t *testing.T) (weights.Qwen3Config, nn.Source) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cfg := weights.DefaultQwen3Config()
	src := fixture.Component(t, filepath.Join(dir, "text_encoder"), &cfg)
	return cfg, src
}

// TestStreamingMatchesResident: the streaming encoder gives bit-identical
// results on every fixture prompt, holds at most two layers' weights, and
// none after Encode; EncodeAll equals separate Encodes.
func TestStreamingMatchesResident(t *testing.T) {
	cfg, src := source(t)
	res, err := qwen3.New(cpu.New(), cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	wc := &weightCounter{Backend: cpu.New(), live: map[compute.Tensor]bool{}}
	st, err := qwen3.NewStreaming(wc, cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !st.Streaming() || res.Streaming() {
		t.Error("Streaming() is wrong")
	}
	if wc.cur != 0 {
		t.Errorf("NewStreaming bound %d weights; want none (the embedding is read on the host)", wc.cur)
	}
	fx := fixture.Open(t, "fixtures/text_encoder.safetensors")
	perLayer := 11
	var prompts [][]int
	for _, id := range []string{"en", "zh", "empty"} {
		ids := fx.I64(t, id+"/input_ids")
		n := 0
		for _, m := range fx.I64(t, id+"/attention_mask") {
			n += m
		}
		ids = ids[:n]
		prompts = append(prompts, ids)
		want, err := res.Encode(context.Background(), ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		wc.peak = 0
		got, err := st.Encode(context.Background(), ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: streaming result differs", id)
		}
		fixture.Check(t, id, got, fx.F32(t, id+"/prompt_embeds"), fixture.TextEncoder)
		if wc.peak > 2*perLayer || wc.peak < perLayer || wc.cur != 0 {
			t.Errorf("%s: %d weights at once (%d left); want one or two layers (%d each), none after", id, wc.peak, wc.cur, perLayer)
		}
	}
	all, err := st.EncodeAll(context.Background(), prompts...)
	if err != nil {
		t.Fatal(err)
	}
	for i, ids := range prompts {
		want, _ := res.Encode(context.Background(), ids, nil)
		if !slices.Equal(all[i], want) {
			t.Errorf("EncodeAll prompt %d differs from Encode", i)
		}
	}
}

func TestStreamingErrors(t *testing.T) {
	cfg, src := source(t)
	drop := dropSource{src, "model.layers.2.mlp.up_proj.weight"}
	var te *nn.TensorError
	if _, err := qwen3.NewStreaming(cpu.New(), cfg, drop); !errors.As(err, &te) || te.Name != drop.name {
		t.Errorf("missing tensor: got %v, want a *TensorError at NewStreaming", err)
	}
	bad := cfg
	bad.HiddenSize *= 2
	bad.HeadDim = 16
	if _, err := qwen3.NewStreaming(cpu.New(), bad, src); !errors.As(err, &te) || te.Name != "model.embed_tokens.weight" {
		t.Errorf("wrong hidden size: got %v", err)
	}
	wc := &weightCounter{Backend: cpu.New(), live: map[compute.Tensor]bool{}}
	st, err := qwen3.NewStreaming(wc, cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Encode(ctx, []int{1, 2, 3}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
	if wc.cur != 0 {
		t.Errorf("%d weights left bound after a cancelled Encode", wc.cur)
	}
	if _, err := st.EncodeAll(context.Background()); err == nil {
		t.Error("no prompts: want an error")
	}
}
