// Package controlnet is the Z-Image ControlNet (diffusers'
// ZImageControlNetModel, the Z-Image-Turbo-Fun-Controlnet-Union releases):
// control blocks that read a VAE-encoded control image and add scaled hints
// to the DiT's main layers (and, for the 2.x releases, to its noise
// refiners), through the dit.Hook of one forward.
package controlnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/zimage/zimage/weights"
)

// The three block arrangements of add_control_noise_refiner.
const (
	// RefinerNone (null; Union v1): control_noise_refiner holds plain
	// transformer blocks that refine the control tokens; no refiner hints.
	RefinerNone = ""
	// RefinerControlLayers ("control_layers"; Union 2.0): the control layers
	// also run over the image tokens before the noise refiner and their
	// first hints go to the noise-refiner layers.
	RefinerControlLayers = "control_layers"
	// RefinerControlNoiseRefiner ("control_noise_refiner"; Union 2.1):
	// dedicated control blocks give the noise-refiner hints.
	RefinerControlNoiseRefiner = "control_noise_refiner"
)

// Config is controlnet/config.json of a ZImageControlNetModel. Zero size
// fields take the Z-Image-Turbo value noted beside them.
type Config struct {
	ControlLayersPlaces        []int   `json:"control_layers_places"`         // main layers that get a hint
	ControlRefinerLayersPlaces []int   `json:"control_refiner_layers_places"` // noise-refiner layers that get a hint
	ControlInDim               int     `json:"control_in_dim"`                // control latent channels (16 or 33)
	AddControlNoiseRefiner     *string `json:"add_control_noise_refiner"`     // see Refiner*
	AllPatchSize               []int   `json:"all_patch_size"`                // [2]
	AllFPatchSize              []int   `json:"all_f_patch_size"`              // [1]
	Dim                        int     `json:"dim"`                           // 3840
	NRefinerLayers             int     `json:"n_refiner_layers"`              // 2
	NHeads                     int     `json:"n_heads"`                       // 30
	NKVHeads                   int     `json:"n_kv_heads"`                    // 30
	NormEps                    float64 `json:"norm_eps"`                      // 1e-5
	QKNorm                     *bool   `json:"qk_norm"`                       // true
}

// Refiner is the add_control_noise_refiner mode ("" for null).
func (c *Config) Refiner() string {
	if c.AddControlNoiseRefiner == nil {
		return RefinerNone
	}
	return *c.AddControlNoiseRefiner
}

// ConfigError reports a config value the ControlNet cannot run with.
type ConfigError struct {
	File   string
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	f := e.File
	if f == "" {
		f = "(inferred)"
	}
	return fmt.Sprintf("controlnet: config %s: %s: %s", f, e.Field, e.Reason)
}

// MismatchError reports a ControlNet made for another transformer: a size
// that must equal the DiT's differs, or a hint goes to a layer it lacks.
type MismatchError struct {
	Field       string
	ControlNet  string
	Transformer string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("controlnet: made for another transformer: %s is %s, the transformer has %s", e.Field, e.ControlNet, e.Transformer)
}

// defaults fills zero fields with the Z-Image-Turbo values, like upstream's
// constructor defaults.
func (c *Config) defaults() {
	if len(c.AllPatchSize) == 0 {
		c.AllPatchSize = []int{2}
	}
	if len(c.AllFPatchSize) == 0 {
		c.AllFPatchSize = []int{1}
	}
	if c.Dim == 0 {
		c.Dim = 3840
	}
	if c.NRefinerLayers == 0 {
		c.NRefinerLayers = 2
	}
	if c.NHeads == 0 {
		c.NHeads = 30
	}
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-5
	}
}

// ReadConfig decodes a ControlNet config.json.
func ReadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, &weights.ConfigError{File: path, Err: err}
	}
	return ParseConfig(data, path)
}

// ParseConfig decodes the bytes of a ControlNet config.json (path names it
// in errors) and validates it.
func ParseConfig(data []byte, path string) (Config, error) {
	var c Config
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return c, &weights.ConfigError{File: path, Err: errors.New("not a JSON object")}
	}
	if err := json.Unmarshal(data, &c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return c, &weights.ConfigError{File: path, Field: te.Field, Err: fmt.Errorf("cannot use JSON %s as %s", te.Value, te.Type)}
		}
		return c, &weights.ConfigError{File: path, Err: err}
	}
	c.defaults()
	if err := c.validate(); err != nil {
		err.File = path
		return c, err
	}
	return c, nil
}

// validate checks the config on its own (Check compares it with the DiT).
func (c *Config) validate() *ConfigError {
	bad := func(f, format string, a ...any) *ConfigError {
		return &ConfigError{Field: f, Reason: fmt.Sprintf(format, a...)}
	}
	switch c.Refiner() {
	case RefinerNone, RefinerControlLayers, RefinerControlNoiseRefiner:
	default:
		return bad("add_control_noise_refiner", "%q is not null, \"control_layers\" or \"control_noise_refiner\"", c.Refiner())
	}
	switch {
	case len(c.ControlLayersPlaces) == 0 || c.ControlLayersPlaces[0] != 0:
		// Upstream: block_id 0 (the one with before_proj) must come first.
		return bad("control_layers_places", "%v must start with 0", c.ControlLayersPlaces)
	case c.ControlInDim <= 0:
		return bad("control_in_dim", "%d must be positive", c.ControlInDim)
	case c.Dim <= 0 || c.NHeads <= 0 || c.Dim%c.NHeads != 0:
		return bad("n_heads", "dim %d is not a multiple of %d heads", c.Dim, c.NHeads)
	case c.NRefinerLayers < 0:
		return bad("n_refiner_layers", "%d is negative", c.NRefinerLayers)
	case len(c.AllPatchSize) != 1 || len(c.AllFPatchSize) != 1:
		return bad("all_patch_size", "exactly one patch size is supported")
	}
	for _, pl := range [][]int{c.ControlLayersPlaces, c.ControlRefinerLayersPlaces} {
		s := slices.Clone(pl)
		slices.Sort(s)
		if len(slices.Compact(s)) != len(pl) || (len(s) > 0 && s[0] < 0) {
			return bad("control_layers_places", "%v: places must be distinct and non-negative", pl)
		}
	}
	if c.Refiner() != RefinerNone {
		// The refiner hints come from the first blocks of the refiner stage.
		n := c.NRefinerLayers
		if c.Refiner() == RefinerControlLayers {
			n = len(c.ControlLayersPlaces)
		}
		if len(c.ControlRefinerLayersPlaces) > n {
			return bad("control_refiner_layers_places", "%d places for %d refiner-stage control blocks", len(c.ControlRefinerLayersPlaces), n)
		}
	}
	return nil
}

// Check reports whether the ControlNet fits the transformer d (a
// *MismatchError when not).
func (c *Config) Check(d weights.DiTConfig, latentChannels int) error {
	mm := func(f string, a, b any) error {
		return &MismatchError{Field: f, ControlNet: fmt.Sprint(a), Transformer: fmt.Sprint(b)}
	}
	qk := func(p *bool) bool { return p == nil || *p }
	switch {
	case c.Dim != d.Dim:
		return mm("dim", c.Dim, d.Dim)
	case c.NHeads != d.NHeads:
		return mm("n_heads", c.NHeads, d.NHeads)
	case c.NRefinerLayers != d.NRefinerLayers:
		return mm("n_refiner_layers", c.NRefinerLayers, d.NRefinerLayers)
	case c.AllPatchSize[0] != d.PatchSize() || c.AllFPatchSize[0] != d.AllFPatchSize[0]:
		return mm("all_patch_size", c.AllPatchSize, d.AllPatchSize)
	case c.NormEps != d.NormEps:
		return mm("norm_eps", c.NormEps, d.NormEps)
	case qk(c.QKNorm) != qk(d.QKNorm):
		return mm("qk_norm", qk(c.QKNorm), qk(d.QKNorm))
	case c.ControlInDim < latentChannels:
		return mm("control_in_dim", c.ControlInDim, fmt.Sprintf("%d latent channels", latentChannels))
	}
	for _, p := range c.ControlLayersPlaces {
		if p >= d.NLayers {
			return mm("control_layers_places", c.ControlLayersPlaces, fmt.Sprintf("%d layers", d.NLayers))
		}
	}
	for _, p := range c.ControlRefinerLayersPlaces {
		if p >= d.NRefinerLayers {
			return mm("control_refiner_layers_places", c.ControlRefinerLayersPlaces, fmt.Sprintf("%d noise-refiner layers", d.NRefinerLayers))
		}
	}
	return nil
}
