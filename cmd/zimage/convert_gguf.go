package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/zimage/zimage/weights"
)

// runConvertGGUF writes one component of SRC (a model directory, a
// component directory or a checkpoint file) as a quantized GGUF file.
func runConvertGGUF(ctx context.Context, src, dst, to string, qt weights.DType, component string, verbose bool, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "zimage convert: "+format+"\n", args...)
		return 1
	}
	if qt == weights.Invalid {
		dt, ok := parseTargetDType(to)
		if !ok {
			fmt.Fprintf(stderr, "zimage convert: --to %q: want a GGUF type (q8_0, q6_k, q5_k, q4_k, q4_0, q5_0, q5_1, q4_1, q3_k, q2_k) or bf16, f16, f32\n", to)
			return 2
		}
		qt = dt
	}
	if !strings.HasSuffix(strings.ToLower(dst), ".gguf") {
		fmt.Fprintf(stderr, "zimage convert: --to %s writes GGUF: DST must end in .gguf\n", to)
		return 2
	}
	m, comp, err := openForGGUF(src, component)
	if err != nil {
		return fail("%s", flatLine(err.Error()))
	}
	var s *weights.Set
	if comp == weights.CompTextEncoder {
		s, err = m.OpenTextEncoder()
	} else {
		s, err = m.OpenTransformer()
	}
	if err != nil {
		return fail("%s", flatLine(err.Error()))
	}
	defer s.Close()
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	o := weights.GGUFConvertOptions{Type: qt, DiTKey: m.DiT.EmbedderKey(0), TextEncoder: &m.TextEncoder, Log: log, Ctx: ctx}
	if comp == weights.CompTextEncoder && m.TokenizerDir != "" {
		// Embed the vocabulary as llama.cpp does, so the file is self-describing.
		if meta, err := weights.TokenizerGGUFMeta(m.TokenizerDir, m.TextEncoder.VocabSize); err == nil {
			o.Meta = meta
		} else if verbose {
			fmt.Fprintf(stderr, "zimage convert: no vocabulary embedded: %v\n", err)
		}
	}
	if err := weights.WriteComponentGGUF(s, comp, dst, o); err != nil {
		return fail("%s", flatLine(err.Error()))
	}
	g, err := weights.OpenGGUF(dst)
	if err != nil {
		return fail("reading back %s: %v", dst, err)
	}
	defer g.Close()
	counts := map[weights.DType]int{}
	var bytes int64
	for _, n := range g.Names() {
		t, _ := g.Tensor(n)
		counts[t.DType]++
		bytes += int64(len(t.Data))
	}
	var parts []string
	for dt, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, dt))
	}
	fmt.Fprintf(stdout, "wrote %s: %s %d tensors (%s), %s bytes of tensor data\n", dst, comp, g.Len(), strings.Join(sortedStrings(parts), ", "), groupDigits(bytes))
	return 0
}

func sortedStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// openForGGUF makes a Model reading the requested component from src: a
// model directory (configs from it), a component directory with
// config.json, or a checkpoint file (Z-Image-Turbo configs).
func openForGGUF(src, component string) (*weights.Model, string, error) {
	switch component {
	case "", weights.CompTransformer, weights.CompTextEncoder:
	default:
		return nil, "", fmt.Errorf("--component %q: want %s or %s", component, weights.CompTransformer, weights.CompTextEncoder)
	}
	if st, err := os.Stat(filepath.Join(src, "model_index.json")); err == nil && !st.IsDir() {
		m, err := weights.OpenModel(src)
		if component == "" {
			component = weights.CompTransformer
		}
		return m, component, err
	}
	m := &weights.Model{DiT: weights.DefaultDiTConfig(), TextEncoder: weights.DefaultQwen3Config(), VAE: weights.DefaultVAEConfig(), Scheduler: weights.DefaultSchedulerConfig()}
	s, err := weights.Open(src)
	if err != nil {
		return nil, "", err
	}
	parts := weights.DetectParts(s)
	s.Close()
	if component == "" {
		for _, p := range parts {
			if p.Component == weights.CompTransformer || p.Component == weights.CompTextEncoder {
				component = p.Component
				break
			}
		}
		if component == "" {
			return nil, "", fmt.Errorf("%s holds no transformer or text encoder tensors", src)
		}
	}
	if cfg := filepath.Join(src, "config.json"); fileExists(cfg) {
		raw, err := os.ReadFile(cfg)
		if err != nil {
			return nil, "", err
		}
		if component == weights.CompTransformer {
			err = decodeConfig(cfg, raw, &m.DiT)
		} else {
			err = decodeConfig(cfg, raw, &m.TextEncoder)
		}
		if err != nil {
			return nil, "", err
		}
	}
	return m, component, m.UseFile(component, src)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
