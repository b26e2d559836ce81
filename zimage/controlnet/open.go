package controlnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/zimage/zimage/weights"
)

// Checkpoint is an opened ControlNet: its config and weights.
type Checkpoint struct {
	Config Config
	Set    *weights.Set
	Path   string
	// Inferred says the config was derived from a single file's tensors
	// (no config.json).
	Inferred bool
}

// Close releases the weights.
func (c *Checkpoint) Close() error {
	if c == nil || c.Set == nil {
		return nil
	}
	err := c.Set.Close()
	c.Set = nil
	return err
}

// Open opens a ControlNet from path: a diffusers-layout directory
// (config.json + diffusion_pytorch_model.safetensors), or a single
// .safetensors file as released (Z-Image-Turbo-Fun-Controlnet-Union*.safetensors;
// the same tensor names). A single file's config comes from a config.json
// beside it when there is one, else from its tensors and the transformer d
// (see InferConfig).
func Open(path string, d weights.DiTConfig) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("controlnet: %w", err)
	}
	set, err := weights.Open(path)
	if err != nil {
		return nil, fmt.Errorf("controlnet: %w", err)
	}
	ck := &Checkpoint{Set: set, Path: path}
	cfgPath := filepath.Join(path, "config.json")
	if !st.IsDir() {
		cfgPath = filepath.Join(filepath.Dir(path), "config.json")
		if _, err := os.Stat(cfgPath); err != nil {
			cfgPath = ""
		} else if c, err := ReadConfig(cfgPath); err != nil || c.ControlInDim == 0 {
			cfgPath = "" // a config.json of something else
		}
	}
	if cfgPath != "" {
		ck.Config, err = ReadConfig(cfgPath)
	} else {
		ck.Config, err = InferConfig(set, d)
		ck.Inferred = true
	}
	if err != nil {
		set.Close()
		return nil, err
	}
	return ck, nil
}

// InferConfig derives the config of a single-file ControlNet from its
// tensors and the transformer it is for: dim and control_in_dim from
// control_all_x_embedder, the head count from the q-norm width, the block
// arrangement like upstream's single-file loader (control_noise_refiner.0.
// before_proj present and non-zero: 2.1; present and zero, or absent with no
// refiner blocks: 2.0; refiner blocks without it: v1). The released files
// carry no layer places: N control blocks are spread evenly over the n_layers
// main layers (0, n/N, 2n/N, …: v1 has 6 on 30, 2.x 15 on 30), and every
// noise-refiner layer gets a hint.
func InferConfig(s *weights.Set, d weights.DiTConfig) (Config, error) {
	bad := func(f, format string, a ...any) (Config, error) {
		return Config{}, &ConfigError{File: s.Path(), Field: f, Reason: fmt.Sprintf(format, a...)}
	}
	c := Config{
		AllPatchSize:  []int{d.PatchSize()},
		AllFPatchSize: []int{d.AllFPatchSize[0]},
		NormEps:       d.NormEps,
		QKNorm:        d.QKNorm,
	}
	key := strconv.Itoa(d.PatchSize()) + "-" + strconv.Itoa(d.AllFPatchSize[0])
	emb, ok := s.Tensor("control_all_x_embedder." + key + ".weight")
	if !ok || len(emb.Shape) != 2 {
		return bad("control_all_x_embedder", "no 2-D tensor control_all_x_embedder.%s.weight: not a Z-Image ControlNet", key)
	}
	pp := d.PatchSize() * d.PatchSize() * d.AllFPatchSize[0]
	c.Dim = emb.Shape[0]
	if emb.Shape[1]%pp != 0 {
		return bad("control_in_dim", "embedder width %d is not a multiple of %d", emb.Shape[1], pp)
	}
	c.ControlInDim = emb.Shape[1] / pp
	c.NHeads = d.NHeads
	if nq, ok := s.Tensor("control_layers.0.attention.norm_q.weight"); ok && len(nq.Shape) == 1 && nq.Shape[0] > 0 && c.Dim%nq.Shape[0] == 0 {
		c.NHeads = c.Dim / nq.Shape[0]
	}
	c.NKVHeads = c.NHeads
	count := func(prefix string) int {
		n := 0
		for {
			if _, ok := s.Tensor(prefix + strconv.Itoa(n) + ".attention_norm1.weight"); !ok {
				return n
			}
			n++
		}
	}
	nCtl, nRef := count("control_layers."), count("control_noise_refiner.")
	if nCtl == 0 {
		return bad("control_layers_places", "no control_layers.0 tensors")
	}
	c.NRefinerLayers = d.NRefinerLayers
	mode := RefinerControlLayers
	if bp, ok := s.Tensor("control_noise_refiner.0.before_proj.weight"); ok {
		v, err := bp.Float32()
		if err != nil {
			return Config{}, fmt.Errorf("controlnet: %s: %w", s.Path(), err)
		}
		if !allZero(v) {
			mode = RefinerControlNoiseRefiner
		}
	} else if nRef > 0 {
		mode = RefinerNone
	}
	c.AddControlNoiseRefiner = &mode
	if mode == RefinerNone {
		c.AddControlNoiseRefiner = nil
	} else {
		for i := 0; i < d.NRefinerLayers; i++ {
			c.ControlRefinerLayersPlaces = append(c.ControlRefinerLayersPlaces, i)
		}
	}
	if d.NLayers%nCtl != 0 {
		return bad("control_layers_places", "%d control blocks do not spread evenly over %d layers; put the ControlNet's config.json beside the file", nCtl, d.NLayers)
	}
	for i := 0; i < nCtl; i++ {
		c.ControlLayersPlaces = append(c.ControlLayersPlaces, i*d.NLayers/nCtl)
	}
	if err := c.validate(); err != nil {
		err.File = s.Path()
		return c, err
	}
	return c, nil
}

func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}
