package weights

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// ModelIndex is a decoded model_index.json: the pipeline class and, per
// component, the library and class that load it.
type ModelIndex struct {
	ClassName        string                // "_class_name", e.g. ZImagePipeline
	DiffusersVersion string                // "_diffusers_version"
	Components       map[string]ModelClass // "transformer" → {diffusers ZImageTransformer2DModel}, ...
}

// ModelClass is one component entry of model_index.json: [library, class].
type ModelClass struct {
	Library string
	Class   string
}

// Model is a diffusers-layout model directory (model_index.json, scheduler/,
// text_encoder/, tokenizer/, transformer/, vae/). Configs are decoded over
// the Default*Config values: keys present in a file override them.
type Model struct {
	Dir          string
	Index        ModelIndex
	DiT          DiTConfig
	TextEncoder  Qwen3Config
	VAE          VAEConfig
	Scheduler    SchedulerConfig
	TokenizerDir string // tokenizer directory (or tokenizer.json file for single-file models)

	// sources replaces the directory's own folder for some components
	// (single-file checkpoints, converted copies); see singlefile.go.
	sources map[string]componentSource
}

// The components a Z-Image model directory must list and hold.
var modelComponents = []string{"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}

// OpenModel reads and validates the configs of a model directory; it opens
// no weights. Errors are *ConfigError values naming the file and field.
func OpenModel(dir string) (*Model, error) {
	m := &Model{
		Dir: dir, DiT: DefaultDiTConfig(), TextEncoder: DefaultQwen3Config(),
		VAE: DefaultVAEConfig(), Scheduler: DefaultSchedulerConfig(),
		TokenizerDir: filepath.Join(dir, "tokenizer"),
	}
	indexPath := filepath.Join(dir, "model_index.json")
	idx, err := readModelIndex(indexPath)
	if err != nil {
		return nil, err
	}
	m.Index = idx
	for _, c := range modelComponents {
		if _, ok := idx.Components[c]; !ok {
			return nil, &ConfigError{File: indexPath, Field: c, Err: errors.New("component missing")}
		}
	}
	configs := []struct {
		path string
		v    interface{ Validate() error }
	}{
		{filepath.Join(dir, "transformer", "config.json"), &m.DiT},
		{filepath.Join(dir, "text_encoder", "config.json"), &m.TextEncoder},
		{filepath.Join(dir, "vae", "config.json"), &m.VAE},
		{filepath.Join(dir, "scheduler", "scheduler_config.json"), &m.Scheduler},
	}
	for _, c := range configs {
		if err := decodeConfigFile(c.path, c.v); err != nil {
			return nil, err
		}
		if err := c.v.Validate(); err != nil {
			return nil, withFile(err, c.path)
		}
	}
	if err := checkTokenizerDir(m.TokenizerDir); err != nil {
		return nil, err
	}
	return m, nil
}

// readModelIndex decodes model_index.json: "_"-prefixed keys are attributes,
// the others [library, class] pairs (diffusers writes [null, null] for an
// absent optional component; those are skipped).
func readModelIndex(path string) (ModelIndex, error) {
	var idx ModelIndex
	data, err := os.ReadFile(path)
	if err != nil {
		return idx, &ConfigError{File: path, Err: err}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		if err == nil {
			err = errors.New("not a JSON object")
		}
		return idx, &ConfigError{File: path, Err: err}
	}
	idx.Components = map[string]ModelClass{}
	for k, v := range raw {
		switch {
		case k == "_class_name":
			if err := json.Unmarshal(v, &idx.ClassName); err != nil {
				return idx, &ConfigError{File: path, Field: k, Err: errors.New("not a string")}
			}
		case k == "_diffusers_version":
			if err := json.Unmarshal(v, &idx.DiffusersVersion); err != nil {
				return idx, &ConfigError{File: path, Field: k, Err: errors.New("not a string")}
			}
		case strings.HasPrefix(k, "_"):
		default:
			var pair []*string
			if err := json.Unmarshal(v, &pair); err != nil || len(pair) != 2 {
				return idx, &ConfigError{File: path, Field: k, Err: errors.New(`want ["library", "class"]`)}
			}
			if pair[0] == nil || pair[1] == nil {
				continue
			}
			idx.Components[k] = ModelClass{Library: *pair[0], Class: *pair[1]}
		}
	}
	return idx, nil
}

// checkTokenizerDir requires tokenizer.json, or vocab.json with merges.txt.
func checkTokenizerDir(dir string) error {
	exists := func(name string) bool {
		st, err := os.Stat(filepath.Join(dir, name))
		return err == nil && !st.IsDir()
	}
	if exists("tokenizer.json") || exists("vocab.json") && exists("merges.txt") {
		return nil
	}
	return &ConfigError{File: dir, Err: errors.New("tokenizer directory lacks tokenizer.json (or vocab.json + merges.txt)")}
}

// OpenTransformer opens transformer/ and checks it against the DiT config.
func (m *Model) OpenTransformer() (*Set, error) {
	return m.openComponent(CompTransformer, nil, func(s *Set) error { return CheckDiT(m.DiT, s) })
}

// OpenTextEncoder opens text_encoder/ with names in the checkpoint form
// "model.layers.N...." (files written without the prefix, as Qwen3Model
// saves them, are mapped) and checks them against the Qwen3 config.
func (m *Model) OpenTextEncoder() (*Set, error) {
	return m.openComponent(CompTextEncoder, Qwen3Name, func(s *Set) error { return CheckQwen3(m.TextEncoder, s) })
}

// OpenVAE opens vae/ and checks the decoder tensors against the VAE config.
func (m *Model) OpenVAE() (*Set, error) {
	return m.openComponent(CompVAE, nil, func(s *Set) error { return CheckVAE(m.VAE, s) })
}

// Qwen3Name maps a text-encoder tensor name to the Qwen3ForCausalLM form:
// names already under "model." and lm_head.* are kept, the rest gain the
// "model." prefix. Use it with Set.Rename.
func Qwen3Name(name string) string {
	if strings.HasPrefix(name, "model.") || strings.HasPrefix(name, "lm_head.") {
		return name
	}
	return "model." + name
}

func openChecked(path string, rename func(string) string, check func(*Set) error) (*Set, error) {
	s, err := Open(path)
	if err != nil {
		return nil, err
	}
	if rename != nil {
		r, err := s.Rename(rename)
		if err != nil {
			s.Close()
			return nil, err
		}
		s = r
	}
	if err := check(s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
