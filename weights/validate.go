package weights

import (
	"errors"
	"fmt"
)

// fieldErr builds the *ConfigError for one bad field (File is filled in by
// the caller that knows it).
func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

func positive(field string, v int) error {
	if v <= 0 {
		return fieldErr(field, "must be positive, got %d", v)
	}
	return nil
}

func positiveF(field string, v float64) error {
	if !(v > 0) {
		return fieldErr(field, "must be positive, got %v", v)
	}
	return nil
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// Validate checks that the config describes a transformer this package can
// name and shape: positive sizes, heads dividing dim, RoPE axes summing to
// head_dim, one frame patch size per patch size. n_kv_heads is not checked:
// the reference ignores it (k and v have n_heads heads). It returns a *ConfigError
// naming the JSON field.
func (c *DiTConfig) Validate() error {
	if err := first(
		positive("dim", c.Dim), positive("n_heads", c.NHeads),
		positive("in_channels", c.InChannels), positive("cap_feat_dim", c.CapFeatDim),
		positiveF("norm_eps", c.NormEps), positiveF("rope_theta", c.RopeTheta), positiveF("t_scale", c.TScale),
	); err != nil {
		return err
	}
	if c.NLayers < 0 {
		return fieldErr("n_layers", "must not be negative, got %d", c.NLayers)
	}
	if c.NRefinerLayers < 0 {
		return fieldErr("n_refiner_layers", "must not be negative, got %d", c.NRefinerLayers)
	}
	if c.Dim%c.NHeads != 0 {
		return fieldErr("n_heads", "%d does not divide dim %d", c.NHeads, c.Dim)
	}
	if len(c.AllPatchSize) == 0 {
		return fieldErr("all_patch_size", "must not be empty")
	}
	if len(c.AllFPatchSize) != len(c.AllPatchSize) {
		return fieldErr("all_f_patch_size", "has %d entries, all_patch_size has %d", len(c.AllFPatchSize), len(c.AllPatchSize))
	}
	for i := range c.AllPatchSize {
		if c.AllPatchSize[i] <= 0 {
			return fieldErr("all_patch_size", "entries must be positive, got %v", c.AllPatchSize)
		}
		if c.AllFPatchSize[i] <= 0 {
			return fieldErr("all_f_patch_size", "entries must be positive, got %v", c.AllFPatchSize)
		}
	}
	if len(c.AxesDims) == 0 {
		return fieldErr("axes_dims", "must not be empty")
	}
	if len(c.AxesLens) != len(c.AxesDims) {
		return fieldErr("axes_lens", "has %d entries, axes_dims has %d", len(c.AxesLens), len(c.AxesDims))
	}
	sum := 0
	for i, d := range c.AxesDims {
		if d <= 0 || d%2 != 0 {
			return fieldErr("axes_dims", "entries must be positive and even, got %v", c.AxesDims)
		}
		if c.AxesLens[i] <= 0 {
			return fieldErr("axes_lens", "entries must be positive, got %v", c.AxesLens)
		}
		sum += d
	}
	if sum != c.HeadDim() {
		return fieldErr("axes_dims", "%v sums to %d, head_dim (dim/n_heads) is %d", c.AxesDims, sum, c.HeadDim())
	}
	if c.SiglipFeatDim != nil {
		return fieldErr("siglip_feat_dim", "image conditioning (%d) is not supported; Turbo has null", *c.SiglipFeatDim)
	}
	return nil
}

// Validate checks the text-encoder config (positive sizes, GQA grouping,
// SiLU, no RoPE scaling) and returns a *ConfigError naming the JSON field.
func (c *Qwen3Config) Validate() error {
	if err := first(
		positive("hidden_size", c.HiddenSize), positive("num_hidden_layers", c.NumHiddenLayers),
		positive("num_attention_heads", c.NumAttentionHeads), positive("num_key_value_heads", c.NumKeyValueHeads),
		positive("head_dim", c.HeadDim), positive("intermediate_size", c.IntermediateSize),
		positive("vocab_size", c.VocabSize), positiveF("rms_norm_eps", c.RMSNormEps),
		positiveF("rope_theta", c.RopeTheta),
	); err != nil {
		return err
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fieldErr("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.ModelType != "" && c.ModelType != "qwen3" {
		return fieldErr("model_type", "%q is not qwen3", c.ModelType)
	}
	if c.HiddenAct != "silu" {
		return fieldErr("hidden_act", "%q is not supported (want silu)", c.HiddenAct)
	}
	if c.RopeScaling != nil {
		return fieldErr("rope_scaling", "must be null (scaled RoPE is not supported)")
	}
	return nil
}

// Validate checks the VAE config (positive sizes, channels divisible by the
// group count, UpDecoderBlock2D/DownEncoderBlock2D blocks, SiLU) and returns
// a *ConfigError naming the JSON field.
func (c *VAEConfig) Validate() error {
	if err := first(
		positive("in_channels", c.InChannels), positive("out_channels", c.OutChannels),
		positive("latent_channels", c.LatentChannels), positive("layers_per_block", c.LayersPerBlock),
		positive("norm_num_groups", c.NormNumGroups), positiveF("scaling_factor", c.ScalingFactor),
	); err != nil {
		return err
	}
	if len(c.BlockOutChannels) == 0 {
		return fieldErr("block_out_channels", "must not be empty")
	}
	for _, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return fieldErr("block_out_channels", "entries must be positive multiples of norm_num_groups %d, got %v", c.NormNumGroups, c.BlockOutChannels)
		}
	}
	blocks := func(field string, types []string, want string) error {
		if types == nil {
			return nil
		}
		if len(types) != len(c.BlockOutChannels) {
			return fieldErr(field, "has %d entries, block_out_channels has %d", len(types), len(c.BlockOutChannels))
		}
		for _, t := range types {
			if t != want {
				return fieldErr(field, "block type %q is not supported (want %s)", t, want)
			}
		}
		return nil
	}
	if err := first(
		blocks("up_block_types", c.UpBlockTypes, "UpDecoderBlock2D"),
		blocks("down_block_types", c.DownBlockTypes, "DownEncoderBlock2D"),
	); err != nil {
		return err
	}
	if c.ActFn != "silu" {
		return fieldErr("act_fn", "%q is not supported (want silu)", c.ActFn)
	}
	return nil
}

// Validate checks the scheduler config's basic ranges.
func (c *SchedulerConfig) Validate() error {
	return first(positive("num_train_timesteps", c.NumTrainTimesteps), positiveF("shift", c.Shift))
}

// withFile fills in the file of a *ConfigError returned by a Validate method.
func withFile(err error, file string) error {
	var ce *ConfigError
	if errors.As(err, &ce) && ce.File == "" {
		ce.File = file
	}
	return err
}
