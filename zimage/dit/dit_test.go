package dit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

func load(t *testing.T) (*dit.Model, compute.Backend) {
	return fixture.LoadTiny(t, "transformer", weights.DefaultDiTConfig(), dit.New)
}

// item is one batch item of a dit.safetensors case and where its rows sit in
// the reference's batched tensors.
type item struct {
	i        int // batch index
	xOff     int // row offset in the concatenated x_embed
	capOff   int // row offset in the concatenated cap_embed
	batchLen int
}

// TestForwardFixtures runs every dit.safetensors case as batch-1 calls and
// compares every intermediate. For batch2_masked (items of different lengths,
// masked attention in the reference) each item's valid rows are compared:
// with key masking the valid rows of a batch equal separate batch-1 calls.
func TestForwardFixtures(t *testing.T) {
	m, b := load(t)
	fx := fixture.Open(t, "fixtures/dit.safetensors")
	cfg := m.Config()
	for _, tc := range []struct {
		id    string
		batch int
	}{{"size0", 1}, {"size1", 1}, {"no_padding", 1}, {"batch2_masked", 2}} {
		t.Run(tc.id, func(t *testing.T) {
			ts := fx.F32(t, tc.id+"/in.t")
			xOff, capOff := 0, 0
			for i := 0; i < tc.batch; i++ {
				t.Run(fmt.Sprint("item", i), func(t *testing.T) {
					p := func(s string) string { return fmt.Sprintf("%s/%s.%d", tc.id, s, i) }
					xs := fx.Shape(t, p("in.x"))
					hl, wl := xs[2], xs[3]
					x := fx.F32(t, p("in.x"))
					capFeats := fx.F32(t, p("in.cap_feats"))
					n := len(capFeats) / cfg.CapFeatDim

					lay, err := dit.NewLayout(cfg, hl, wl, n)
					if err != nil {
						t.Fatal(err)
					}
					// Host-side layout: exact.
					if got, want := lay.Patchify(x), fx.F32(t, p("patchify.x_patches")); !slices.Equal(got, want) {
						t.Error("x_patches differ")
					}
					if got, want := lay.PadCaption(capFeats, cfg.CapFeatDim), fx.F32(t, p("patchify.cap_padded")); !slices.Equal(got, want) {
						t.Error("cap_padded differ")
					}
					checkPos(t, "x_pos_ids", lay.ImagePositions(), fx.I64(t, p("patchify.x_pos_ids")))
					checkPos(t, "cap_pos_ids", lay.CaptionPositions(), fx.I64(t, p("patchify.cap_pos_ids")))
					checkMask(t, "x_pad_mask", lay.Ni, lay.Nip, fx.I64(t, p("patchify.x_pad_mask")))
					checkMask(t, "cap_pad_mask", lay.N, lay.Lcp, fx.I64(t, p("patchify.cap_pad_mask")))

					// RoPE tables: max abs ≤ 1e-6 against freqs_cis (valid rows).
					freqs := func(stage string, pos []dit.Pos) {
						cos, sin := dit.RopeTables(cfg, pos)
						ref := rowsOf(fx.F32(t, tc.id+"/"+stage+".in.freqs_cis"), fx.Shape(t, tc.id+"/"+stage+".in.freqs_cis"), i, 0, len(pos))
						got := make([]float32, 0, 2*len(cos))
						for r := range cos {
							got = append(got, cos[r], sin[r])
						}
						fixture.Check(t, stage+".in.freqs_cis", got, ref, fixture.Freqs)
					}
					freqs("noise_refiner", lay.ImagePositions())
					freqs("context_refiner", lay.CaptionPositions())
					freqs("layers", append(lay.ImagePositions(), lay.CaptionPositions()...))

					got := map[string][]float32{}
					tr := func(name string, x compute.Tensor) { got[name] = b.ToHost(x) }
					capPrep, err := m.PrepareCaption(context.Background(), capFeats, n, tr)
					if err != nil {
						t.Fatal(err)
					}
					defer capPrep.Free()
					out, err := m.Forward(context.Background(), x, hl, wl, ts[i], capPrep, tr)
					if err != nil {
						t.Fatal(err)
					}
					D := cfg.Dim
					check := func(name string, ref []float32, want int) {
						t.Helper()
						g := got[name]
						if len(g) < want {
							t.Fatalf("%s: traced %d values, want ≥ %d", name, len(g), want)
						}
						s := fixture.Check(t, name, g[:want], ref, fixture.DiT)
						if testing.Verbose() {
							t.Logf("%-22s rel_l2 %.2g max_rel %.2g", name, s.RelL2, s.MaxRel)
						}
					}
					sub := func(name string, rows int) []float32 {
						return rowsOf(fx.F32(t, tc.id+"/"+name), fx.Shape(t, tc.id+"/"+name), i, 0, rows)
					}
					check("t_emb", rowsOf(fx.F32(t, tc.id+"/t_emb"), fx.Shape(t, tc.id+"/t_emb"), 0, i, i+1), cfg.AdaLNDim())
					check("x_embed", fx.F32(t, tc.id+"/x_embed")[xOff*D:][:lay.Nip*D], lay.Nip*D)
					check("cap_embed", fx.F32(t, tc.id+"/cap_embed")[capOff*D:][:lay.Lcp*D], lay.Lcp*D)
					check("noise_refiner.in.x", sub("noise_refiner.in.x", lay.Nip), lay.Nip*D)
					check("context_refiner.in.x", sub("context_refiner.in.x", lay.Lcp), lay.Lcp*D)
					for k := 0; k < cfg.NRefinerLayers; k++ {
						check(fmt.Sprint("noise_refiner.", k), sub(fmt.Sprint("noise_refiner.", k), lay.Nip), lay.Nip*D)
						check(fmt.Sprint("context_refiner.", k), sub(fmt.Sprint("context_refiner.", k), lay.Lcp), lay.Lcp*D)
					}
					L := lay.Nip + lay.Lcp
					check("layers.in.x", sub("layers.in.x", L), L*D)
					for k := 0; k < cfg.NLayers; k++ {
						check(fmt.Sprint("layers.", k), sub(fmt.Sprint("layers.", k), L), L*D)
					}
					check("final_layer", sub("final_layer", L), L*lay.PatchDim())
					s := fixture.Check(t, "out", out, fx.F32(t, p("out")), fixture.DiT)
					t.Logf("out rel_l2 %.2g max_rel %.2g", s.RelL2, s.MaxRel)
				})
				// Offsets of this item in the concatenated embeddings.
				xs := fx.Shape(t, fmt.Sprintf("%s/patchify.x_patches.%d", tc.id, i))
				cs := fx.Shape(t, fmt.Sprintf("%s/patchify.cap_padded.%d", tc.id, i))
				xOff += xs[0]
				capOff += cs[0]
			}
		})
	}
}

// rowsOf returns rows [r0, r1) of batch item i of a [B, S, ...] tensor.
func rowsOf(data []float32, shape []int, i, r0, r1 int) []float32 {
	row := 1
	for _, d := range shape[2:] {
		row *= d
	}
	if len(shape) == 2 { // [B, D]: treat i as the batch and r0..r1 ignored
		return data[r0*shape[1] : r1*shape[1]]
	}
	base := i * shape[1] * row
	return data[base+r0*row : base+r1*row]
}

func checkPos(t *testing.T, what string, got []dit.Pos, want []int) {
	t.Helper()
	if len(want) != 3*len(got) {
		t.Errorf("%s: %d positions, want %d", what, len(got), len(want)/3)
		return
	}
	for i, p := range got {
		if p[0] != want[3*i] || p[1] != want[3*i+1] || p[2] != want[3*i+2] {
			t.Errorf("%s[%d] = %v, want %v", what, i, p, want[3*i:3*i+3])
			return
		}
	}
}

func checkMask(t *testing.T, what string, n, padded int, want []int) {
	t.Helper()
	if len(want) != padded {
		t.Errorf("%s: padded length %d, want %d", what, padded, len(want))
		return
	}
	for i, v := range want {
		if (v == 1) != (i >= n) {
			t.Errorf("%s[%d] = %d with %d real rows", what, i, v, n)
			return
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	cfg := weights.DefaultDiTConfig()
	var se *dit.ShapeError
	if _, err := dit.NewLayout(cfg, 7, 8, 10); !errors.As(err, &se) {
		t.Errorf("odd latent: %v", err)
	}
	if _, err := dit.NewLayout(cfg, 8, 8, 0); !errors.As(err, &se) {
		t.Errorf("empty caption: %v", err)
	}
	if _, err := dit.NewLayout(cfg, 2*513, 8, 10); !errors.As(err, &se) {
		t.Errorf("too tall: %v", err)
	}
	l, err := dit.NewLayout(cfg, 128, 128, 9)
	if err != nil {
		t.Fatal(err)
	}
	// Spec §9.4: n = 9 → Lcp = 32, image t = 33, no image pads at 1024².
	if l.Lcp != 32 || l.Ni != 4096 || l.Nip != 4096 || l.ImagePositions()[0] != (dit.Pos{33, 0, 0}) {
		t.Errorf("1024² layout %+v", l)
	}
}

func TestConfigErrors(t *testing.T) {
	b := cpu.New()
	var ce *dit.ConfigError
	cfg := weights.DefaultDiTConfig()
	cfg.AxesDims = []int{32, 48, 40}
	if _, err := dit.New(b, cfg, nil); !errors.As(err, &ce) || ce.Field != "axes_dims" {
		t.Errorf("axes_dims: %v", err)
	}
	cfg = weights.DefaultDiTConfig()
	cfg.AllFPatchSize = []int{2}
	if _, err := dit.New(b, cfg, nil); !errors.As(err, &ce) {
		t.Errorf("f patch: %v", err)
	}
}

func TestForwardCancel(t *testing.T) {
	m, _ := load(t)
	cfg := m.Config()
	capPrep, err := m.PrepareCaption(context.Background(), make([]float32, 5*cfg.CapFeatDim), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer capPrep.Free()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Forward(ctx, make([]float32, 16*8*8), 8, 8, 0.5, capPrep, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled forward: %v", err)
	}
	// Still usable afterwards.
	if _, err := m.Forward(context.Background(), make([]float32, 16*8*8), 8, 8, 0.5, capPrep, nil); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}
