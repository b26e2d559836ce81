package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/weights/hub"
)

func init() {
	register("inspect", "describe a checkpoint file, shard index, component or model directory", runInspect)
}

func runInspect(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("inspect", stderr,
		"usage: zimage inspect [-tensors] PATH",
		"PATH is a .safetensors or .gguf file, a *.safetensors.index.json, a component directory or a model directory.")
	list := fs.Bool("tensors", false, "list every tensor (name, dtype, shape)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	in := &inspector{w: stdout, list: *list}
	if err := in.inspect(fs.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "zimage inspect: %s\n", flatLine(err.Error()))
		return 1
	}
	return 0
}

// oneLine keeps the failure reason on a single line.
func flatLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

type inspector struct {
	w    io.Writer
	list bool
}

func (in *inspector) printf(format string, args ...any) { fmt.Fprintf(in.w, format, args...) }

func (in *inspector) inspect(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) || !hub.LooksLikeRef(path) {
			return err
		}
		return in.cached(path)
	}
	if st.IsDir() {
		if repo, commit, ok := hub.CachePath(path); ok {
			snap := path
			if commit == "" {
				if snap, err = hub.RepoSnapshot(path, ""); err != nil {
					return err
				}
				commit = filepath.Base(snap)
			}
			in.printf("hub cache   %s, commit %s\n", repo, commit)
			path = snap
		}
		if _, err := os.Stat(filepath.Join(path, "model_index.json")); err == nil {
			return in.model(path)
		}
		return in.component(path)
	}
	s, err := weights.Open(path)
	if err != nil {
		return err
	}
	defer s.Close()
	kind := "safetensors file"
	if s.Index() != "" {
		kind = "shard index"
	}
	if s.GGUF() != nil {
		kind = "GGUF file"
	}
	in.printf("%s %s\n", kind, path)
	in.ggufHeader(s) // inspect_gguf.go
	in.set(s)
	if looksLikeLoRA(s.Names()) { // inspect_lora.go
		in.lora(path)
		return nil
	}
	in.parts(s)
	return nil
}

// cached describes a repository id from the hub cache, without network.
func (in *inspector) cached(name string) error {
	ref, err := hub.ParseRef(name)
	if err != nil {
		return err
	}
	c := hub.FromEnv()
	snap, err := c.Cached(ref, hub.Pipeline())
	if err != nil {
		return fmt.Errorf("%w (run \"zimage pull %s\")", err, ref)
	}
	in.printf("hub cache   %s, commit %s\n", ref, snap.Commit)
	return in.model(snap.Dir)
}

// shardName matches the files of a sharded checkpoint.
var shardName = regexp.MustCompile(`-\d{5}-of-\d{5}\.safetensors$`)

// parts reports which Z-Image components a checkpoint file holds, in which
// layout, and checks each against the Z-Image-Turbo config.
func (in *inspector) parts(s *weights.Set) {
	parts := weights.DetectParts(s)
	if len(parts) == 0 {
		in.printf("  layout      no Z-Image component recognised\n")
		return
	}
	kind := "single file"
	if len(parts) > 1 {
		kind = "all-in-one checkpoint"
	}
	var descr []string
	for _, p := range parts {
		d := p.Component + " (" + layoutName(p) + ")"
		if p.Prefix != "" {
			d += " under " + strings.TrimSuffix(p.Prefix, ".")
		}
		descr = append(descr, d)
	}
	in.printf("  layout      %s: %s\n", kind, strings.Join(descr, ", "))
	if s.Index() == "" && shardName.MatchString(s.Path()) {
		in.printf("  note        one shard of a sharded checkpoint; inspect its index or directory to check it\n")
		return
	}
	ditCfg := weights.DefaultDiTConfig()
	have := map[string]bool{}
	for _, p := range parts {
		have[p.Component] = true
		mapped, err := weights.MapPart(s, p, ditCfg.EmbedderKey(0))
		if err == nil && p.Component == weights.CompTextEncoder {
			mapped, err = mapped.Rename(weights.Qwen3Name)
		}
		if err == nil {
			switch p.Component {
			case weights.CompTransformer:
				err = weights.CheckDiT(ditCfg, mapped)
			case weights.CompTextEncoder:
				err = weights.CheckQwen3(weights.DefaultQwen3Config(), mapped)
			case weights.CompVAE:
				err = weights.CheckVAE(weights.DefaultVAEConfig(), mapped)
			}
		}
		in.printf("  %-11s %d tensors stored, %s\n", p.Component, p.Tensors, dtypeSummary(mapped))
		var se *weights.TensorSetError
		switch {
		case errors.As(err, &se):
			in.printf("  (vs the Z-Image-Turbo config)\n")
			in.checkFailure(se)
		case err != nil:
			in.printf("  check       FAILED: %s\n", flatLine(err.Error()))
		default:
			in.printf("  check       ok against the Z-Image-Turbo config\n")
		}
	}
	var missing []string
	for _, c := range []struct{ comp, flag string }{{weights.CompTransformer, "--transformer"}, {weights.CompTextEncoder, "--text-encoder"}, {weights.CompVAE, "--vae"}} {
		if !have[c.comp] {
			missing = append(missing, c.flag)
		}
	}
	missing = append(missing, "--tokenizer")
	in.printf("  missing     for generate also pass %s (or --model for the rest)\n", strings.Join(missing, ", "))
}

func layoutName(p weights.Part) string {
	switch {
	case p.Layout == weights.LayoutDiffusers:
		return "diffusers names"
	case p.Component == weights.CompTransformer:
		return "ComfyUI/original names, fused qkv"
	case p.Component == weights.CompVAE:
		return "FLUX ae names"
	case p.Layout == weights.LayoutLlamaCpp:
		return "llama.cpp GGUF names"
	}
	return string(p.Layout)
}

// dtypeSummary lists the dtypes of a set ("BF16", "BF16+F32").
func dtypeSummary(s *weights.Set) string {
	if s == nil {
		return "unreadable"
	}
	seen := map[string]bool{}
	var out []string
	for _, name := range s.Names() {
		t, _ := s.Tensor(name)
		if d := t.DType.String(); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "+")
}

// model describes a diffusers model directory and checks every component.
func (in *inspector) model(dir string) error {
	m, err := weights.OpenModel(dir)
	if err != nil {
		return err
	}
	in.printf("model directory %s\n", dir)
	in.printf("layout: diffusers\n")
	in.printf("pipeline: %s (diffusers %s)\n", m.Index.ClassName, m.Index.DiffusersVersion)
	class := func(name string) string {
		c := m.Index.Components[name]
		return fmt.Sprintf("%s (%s)", c.Class, c.Library)
	}
	var failed error
	var params, bytes int64
	for _, c := range []struct {
		name, config string
		open         func() (*weights.Set, error)
	}{
		{"transformer", ditSummary(&m.DiT), m.OpenTransformer},
		{"text_encoder", qwenSummary(&m.TextEncoder), m.OpenTextEncoder},
		{"vae", vaeSummary(&m.VAE), m.OpenVAE},
	} {
		in.printf("\n%s: %s\n", c.name, class(c.name))
		in.printf("  config      %s\n", c.config)
		s, err := c.open()
		var se *weights.TensorSetError
		if errors.As(err, &se) {
			// Report the differences, then describe the tensors anyway.
			in.checkFailure(se)
			if failed == nil {
				failed = err
			}
			s, err = weights.Open(filepath.Join(dir, c.name))
		}
		if err != nil {
			// Report what is missing and go on with the other components.
			in.printf("  weights     MISSING: %s\n", flatLine(strings.TrimPrefix(err.Error(), "weights: ")))
			if failed == nil {
				failed = err
			}
			continue
		}
		p, b := in.set(s)
		params += p
		bytes += b
		if se == nil {
			in.printf("  check       ok (no missing, unexpected or mismatched tensors)\n")
		}
		s.Close()
	}
	in.printf("\nscheduler: %s\n", class("scheduler"))
	sc := m.Scheduler
	in.printf("  config      shift %g, dynamic shifting %v, %d train timesteps\n", sc.Shift, sc.UseDynamicShifting, sc.NumTrainTimesteps)
	in.printf("\ntokenizer: %s\n", class("tokenizer"))
	in.printf("  directory   %s\n", m.TokenizerDir)
	in.printf("\ntotal: %s parameters, %s bytes\n", groupDigits(params), groupDigits(bytes))
	return failed
}

// component describes a directory holding one component's weights; when its
// config.json names a known class, the tensors are checked against it.
func (in *inspector) component(dir string) error {
	s, err := weights.Open(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	in.printf("component directory %s\n", dir)
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		in.set(s)
		return nil
	}
	var head struct {
		ClassName string `json:"_class_name"`
		ModelType string `json:"model_type"`
	}
	json.Unmarshal(raw, &head)
	var check func() error
	switch {
	case head.ClassName == "ZImageTransformer2DModel":
		cfg := weights.DefaultDiTConfig()
		if err := decodeConfig(cfgPath, raw, &cfg); err != nil {
			return err
		}
		in.printf("  config      %s\n", ditSummary(&cfg))
		check = func() error { return weights.CheckDiT(cfg, s) }
	case head.ClassName == "AutoencoderKL":
		cfg := weights.DefaultVAEConfig()
		if err := decodeConfig(cfgPath, raw, &cfg); err != nil {
			return err
		}
		in.printf("  config      %s\n", vaeSummary(&cfg))
		check = func() error { return weights.CheckVAE(cfg, s) }
	case head.ModelType == "qwen3":
		cfg := weights.DefaultQwen3Config()
		if err := decodeConfig(cfgPath, raw, &cfg); err != nil {
			return err
		}
		in.printf("  config      %s\n", qwenSummary(&cfg))
		renamed, err := s.Rename(weights.Qwen3Name)
		if err != nil {
			return err
		}
		check = func() error { return weights.CheckQwen3(cfg, renamed) }
	}
	in.set(s)
	if check == nil {
		return nil
	}
	if err := check(); err != nil {
		var se *weights.TensorSetError
		if errors.As(err, &se) {
			in.checkFailure(se)
		}
		return err
	}
	in.printf("  check       ok (no missing, unexpected or mismatched tensors)\n")
	return nil
}

func decodeConfig(path string, raw []byte, v interface{ Validate() error }) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return &weights.ConfigError{File: path, Err: err}
	}
	if err := v.Validate(); err != nil {
		var ce *weights.ConfigError
		if errors.As(err, &ce) && ce.File == "" {
			ce.File = path
		}
		return err
	}
	return nil
}

// set prints the statistics of a tensor set and returns its parameter and
// byte counts.
func (in *inspector) set(s *weights.Set) (params, bytes int64) {
	type dtStat struct {
		n     int
		bytes int64
	}
	by := map[weights.DType]*dtStat{}
	for _, name := range s.Names() {
		t, _ := s.Tensor(name)
		d := by[t.DType]
		if d == nil {
			d = &dtStat{}
			by[t.DType] = d
		}
		d.n++
		d.bytes += int64(len(t.Data))
		params += int64(t.NumElements())
		bytes += int64(len(t.Data))
	}
	files := s.Files()
	if s.Index() != "" {
		in.printf("  files       %d shards (index %s)\n", len(files), filepath.Base(s.Index()))
	} else {
		in.printf("  files       %s\n", files[0])
	}
	in.printf("  tensors     %d, %s parameters\n", s.Len(), groupDigits(params))
	dts := make([]weights.DType, 0, len(by))
	for d := range by {
		dts = append(dts, d)
	}
	sort.Slice(dts, func(i, j int) bool { return dts[i] < dts[j] })
	for i, d := range dts {
		label := ""
		if i == 0 {
			label = "dtypes"
		}
		in.printf("  %-11s %s: %d tensors, %s bytes\n", label, d, by[d].n, groupDigits(by[d].bytes))
	}
	in.printf("  bytes       %s\n", groupDigits(bytes))
	if ts := s.IndexTotalSize(); ts >= 0 && ts != bytes {
		in.printf("  note        index metadata.total_size is %s\n", groupDigits(ts))
	}
	if meta := s.Metadata(); len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			v := meta[k]
			if len(v) > 40 {
				v = v[:37] + "..."
			}
			kv = append(kv, k+"="+strconv.Quote(v))
		}
		in.printf("  metadata    %s\n", strings.Join(kv, " "))
	}
	if in.list {
		for _, name := range s.Names() {
			t, _ := s.Tensor(name)
			in.printf("    %-60s %-7s %v\n", name, t.DType, t.Shape)
		}
	}
	return params, bytes
}

func (in *inspector) checkFailure(se *weights.TensorSetError) {
	in.printf("  check       FAILED: %d missing, %d unexpected, %d mismatched\n", len(se.Missing), len(se.Unexpected), len(se.Mismatched))
	const show = 20
	names := func(what string, items []string) {
		for i, n := range items {
			if i == show {
				in.printf("    ... and %d more %s\n", len(items)-show, what)
				break
			}
			in.printf("    %s %s\n", what, n)
		}
	}
	names("missing", se.Missing)
	names("unexpected", se.Unexpected)
	var ms []string
	for _, m := range se.Mismatched {
		ms = append(ms, m.String())
	}
	names("mismatched", ms)
}

func ditSummary(c *weights.DiTConfig) string {
	return fmt.Sprintf("dim %d, %d heads (head_dim %d), %d layers + %d refiners each, ffn %d, adaLN %d, cap_feat_dim %d, patch %v/%v, axes %v, rope_theta %g",
		c.Dim, c.NHeads, c.HeadDim(), c.NLayers, c.NRefinerLayers, c.FFNDim(), c.AdaLNDim(), c.CapFeatDim, c.AllPatchSize, c.AllFPatchSize, c.AxesDims, c.RopeTheta)
}

func qwenSummary(c *weights.Qwen3Config) string {
	return fmt.Sprintf("hidden %d, %d layers, %d heads / %d kv (head_dim %d), intermediate %d, vocab %d, rope_theta %g",
		c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize, c.VocabSize, c.RopeTheta)
}

func vaeSummary(c *weights.VAEConfig) string {
	shift := "none"
	if c.ShiftFactor != nil {
		shift = strconv.FormatFloat(*c.ShiftFactor, 'g', -1, 64)
	}
	return fmt.Sprintf("latent %d, block_out_channels %v, layers_per_block %d, groups %d, scaling %g, shift %s",
		c.LatentChannels, c.BlockOutChannels, c.LayersPerBlock, c.NormNumGroups, c.ScalingFactor, shift)
}

// commas formats n with thousands separators.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
