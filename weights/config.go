package weights

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// DiTConfig is transformer/config.json of a ZImageTransformer2DModel. Zero
// fields after decoding take the Z-Image-Turbo value noted beside them.
type DiTConfig struct {
	AllPatchSize   []int   `json:"all_patch_size"`   // [2]
	AllFPatchSize  []int   `json:"all_f_patch_size"` // [1]
	InChannels     int     `json:"in_channels"`      // 16
	Dim            int     `json:"dim"`              // 3840
	NLayers        int     `json:"n_layers"`         // 30
	NRefinerLayers int     `json:"n_refiner_layers"` // 2
	NHeads         int     `json:"n_heads"`          // 30
	NKVHeads       int     `json:"n_kv_heads"`       // 30
	NormEps        float64 `json:"norm_eps"`         // 1e-5
	QKNorm         *bool   `json:"qk_norm"`          // true
	CapFeatDim     int     `json:"cap_feat_dim"`     // 2560
	RopeTheta      float64 `json:"rope_theta"`       // 256
	TScale         float64 `json:"t_scale"`          // 1000
	AxesDims       []int   `json:"axes_dims"`        // [32, 48, 48]
	AxesLens       []int   `json:"axes_lens"`        // [1536, 512, 512]
	// SiglipFeatDim is set by Z-Image variants with an image-conditioning
	// branch; Turbo has null, and non-null is rejected as unsupported.
	SiglipFeatDim *int `json:"siglip_feat_dim"`
}

// PatchSize is the spatial patch size p (latent p×p → one token).
func (c *DiTConfig) PatchSize() int { return c.AllPatchSize[0] }

// HeadDim is Dim / NHeads.
func (c *DiTConfig) HeadDim() int { return c.Dim / c.NHeads }

// AdaLNDim is the width of the timestep embedding (min(dim, 256)).
func (c *DiTConfig) AdaLNDim() int { return min(c.Dim, 256) }

// FFNDim is the SwiGLU hidden width, int(dim/3*8).
func (c *DiTConfig) FFNDim() int { return int(float64(c.Dim) / 3 * 8) }

// Qwen3Config is text_encoder/config.json of the Qwen3 text encoder.
type Qwen3Config struct {
	Architectures     []string `json:"architectures"`
	ModelType         string   `json:"model_type"`          // "qwen3"
	HiddenSize        int      `json:"hidden_size"`         // 2560
	NumHiddenLayers   int      `json:"num_hidden_layers"`   // 36
	NumAttentionHeads int      `json:"num_attention_heads"` // 32
	NumKeyValueHeads  int      `json:"num_key_value_heads"` // 8
	HeadDim           int      `json:"head_dim"`            // 128
	IntermediateSize  int      `json:"intermediate_size"`   // 9728
	HiddenAct         string   `json:"hidden_act"`          // "silu"
	RMSNormEps        float64  `json:"rms_norm_eps"`        // 1e-6
	RopeTheta         float64  `json:"rope_theta"`          // 1e6
	MaxPositions      int      `json:"max_position_embeddings"`
	AttentionBias     bool     `json:"attention_bias"`      // false
	TieWordEmbeddings bool     `json:"tie_word_embeddings"` // true
	VocabSize         int      `json:"vocab_size"`          // 151936
	TorchDType        string   `json:"torch_dtype"`         // "bfloat16"
	// RopeScaling must be null: scaled RoPE variants are not supported.
	RopeScaling any `json:"rope_scaling"`
}

// VAEConfig is vae/config.json of the AutoencoderKL (FLUX VAE).
type VAEConfig struct {
	InChannels           int       `json:"in_channels"`        // 3
	OutChannels          int       `json:"out_channels"`       // 3
	LatentChannels       int       `json:"latent_channels"`    // 16
	BlockOutChannels     []int     `json:"block_out_channels"` // [128, 256, 512, 512]
	LayersPerBlock       int       `json:"layers_per_block"`   // 2
	NormNumGroups        int       `json:"norm_num_groups"`    // 32
	ActFn                string    `json:"act_fn"`             // "silu"
	ScalingFactor        float64   `json:"scaling_factor"`     // 0.3611
	ShiftFactor          *float64  `json:"shift_factor"`       // 0.1159
	MidBlockAddAttention *bool     `json:"mid_block_add_attention"`
	UseQuantConv         bool      `json:"use_quant_conv"`      // false
	UsePostQuantConv     bool      `json:"use_post_quant_conv"` // false
	UpBlockTypes         []string  `json:"up_block_types"`
	DownBlockTypes       []string  `json:"down_block_types"`
	SampleSize           int       `json:"sample_size"` // 1024
	LatentsMean          []float64 `json:"latents_mean"`
	LatentsStd           []float64 `json:"latents_std"`
}

// SchedulerConfig is scheduler/scheduler_config.json of a
// FlowMatchEulerDiscreteScheduler. Missing keys take the diffusers class
// defaults (the real Turbo file has only four keys).
type SchedulerConfig struct {
	NumTrainTimesteps  int      `json:"num_train_timesteps"`  // 1000
	Shift              float64  `json:"shift"`                // 3.0 (Turbo); class default 1.0
	UseDynamicShifting bool     `json:"use_dynamic_shifting"` // false
	BaseShift          float64  `json:"base_shift"`           // 0.5
	MaxShift           float64  `json:"max_shift"`            // 1.15
	BaseImageSeqLen    int      `json:"base_image_seq_len"`   // 256
	MaxImageSeqLen     int      `json:"max_image_seq_len"`    // 4096
	ShiftTerminal      *float64 `json:"shift_terminal"`       // null
	InvertSigmas       bool     `json:"invert_sigmas"`        // false
	UseKarrasSigmas    bool     `json:"use_karras_sigmas"`    // false
	UseExponential     bool     `json:"use_exponential_sigmas"`
	UseBetaSigmas      bool     `json:"use_beta_sigmas"`
	TimeShiftType      string   `json:"time_shift_type"` // "exponential"
	StochasticSampling bool     `json:"stochastic_sampling"`
}

// DefaultDiTConfig returns the Z-Image-Turbo transformer configuration.
func DefaultDiTConfig() DiTConfig {
	t := true
	return DiTConfig{
		AllPatchSize: []int{2}, AllFPatchSize: []int{1}, InChannels: 16, Dim: 3840,
		NLayers: 30, NRefinerLayers: 2, NHeads: 30, NKVHeads: 30, NormEps: 1e-5,
		QKNorm: &t, CapFeatDim: 2560, RopeTheta: 256, TScale: 1000,
		AxesDims: []int{32, 48, 48}, AxesLens: []int{1536, 512, 512},
	}
}

// DefaultQwen3Config returns the Qwen3-4B text-encoder configuration.
func DefaultQwen3Config() Qwen3Config {
	return Qwen3Config{
		Architectures: []string{"Qwen3ForCausalLM"}, ModelType: "qwen3",
		HiddenSize: 2560, NumHiddenLayers: 36, NumAttentionHeads: 32, NumKeyValueHeads: 8,
		HeadDim: 128, IntermediateSize: 9728, HiddenAct: "silu", RMSNormEps: 1e-6,
		RopeTheta: 1e6, MaxPositions: 40960, TieWordEmbeddings: true, VocabSize: 151936,
		TorchDType: "bfloat16",
	}
}

// DefaultVAEConfig returns the FLUX VAE configuration used by Z-Image-Turbo.
func DefaultVAEConfig() VAEConfig {
	t := true
	shift := 0.1159
	return VAEConfig{
		InChannels: 3, OutChannels: 3, LatentChannels: 16,
		BlockOutChannels: []int{128, 256, 512, 512}, LayersPerBlock: 2, NormNumGroups: 32,
		ActFn: "silu", ScalingFactor: 0.3611, ShiftFactor: &shift, MidBlockAddAttention: &t,
		SampleSize: 1024,
	}
}

// DefaultSchedulerConfig returns the FlowMatchEulerDiscreteScheduler class
// defaults with the Turbo shift of 3.0.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{
		NumTrainTimesteps: 1000, Shift: 3.0, BaseShift: 0.5, MaxShift: 1.15,
		BaseImageSeqLen: 256, MaxImageSeqLen: 4096, TimeShiftType: "exponential",
	}
}

// decodeConfigFile decodes a JSON config file over the given defaults: keys
// present in the file override, absent keys keep the default.
func decodeConfigFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &ConfigError{File: path, Err: err}
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return &ConfigError{File: path, Err: errors.New("not a JSON object")}
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &ConfigError{File: path, Field: te.Field, Err: fmt.Errorf("cannot use JSON %s as %s", te.Value, te.Type)}
		}
		return &ConfigError{File: path, Err: err}
	}
	return nil
}

// ConfigError reports an unreadable or invalid config file.
type ConfigError struct {
	File  string
	Field string
	Err   error
}

func (e *ConfigError) Error() string {
	file := e.File
	if file == "" {
		file = "(no file)"
	}
	if e.Field != "" {
		return fmt.Sprintf("weights: config %s: field %q: %v", file, e.Field, e.Err)
	}
	return fmt.Sprintf("weights: config %s: %v", file, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }
