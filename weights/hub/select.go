package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// weightComponents are the pipeline folders holding safetensors weights.
var weightComponents = []string{"transformer", "text_encoder", "vae"}

// Pipeline selects what the Z-Image pipeline reads from a diffusers-layout
// repository: model_index.json, the scheduler config, each component's
// config.json and the tokenizer files, plus the weights of the listed
// components (any of "transformer", "text_encoder", "vae"; none for a
// configs-only pull, as single-file users need): the safetensors shards the
// component's index lists (or its single weights file), chosen the way
// weights.Open picks them in a directory. Variants, .bin files and other
// extras are skipped.
func Pipeline(components ...string) Selection {
	var bad error
	for _, c := range components {
		if !slices.Contains(weightComponents, c) {
			bad = fmt.Errorf("unknown pipeline component %q", c)
		}
	}
	return Selection{
		First: func(f string) bool { return pipelineSmallFile(f, components) },
		Then: func(dir string, files []string) ([]string, error) {
			if bad != nil {
				return nil, bad
			}
			return pipelineWeights(dir, files, components)
		},
		Complete: func(dir string) error {
			if bad != nil {
				return bad
			}
			return pipelineComplete(dir, components)
		},
	}
}

// PipelineAll is Pipeline with the weights of every component.
func PipelineAll() Selection { return Pipeline(weightComponents...) }

func pipelineSmallFile(f string, components []string) bool {
	dir, name := path.Split(f)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case f == "model_index.json", f == "scheduler/scheduler_config.json":
		return true
	case dir == "tokenizer":
		ext := path.Ext(name)
		return ext == ".json" || ext == ".txt" || ext == ".jinja"
	case slices.Contains(weightComponents, dir):
		return name == "config.json" || slices.Contains(components, dir) && strings.HasSuffix(name, ".safetensors.index.json")
	}
	return false
}

// pickWeights mirrors weights.Open on a directory listing: the standard
// shard index, else the only index, else the standard single file, else the
// only .safetensors file. It returns the name and whether it is an index.
func pickWeights(names []string) (string, bool, error) {
	var indexes, files []string
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".safetensors.index.json"):
			indexes = append(indexes, n)
		case strings.HasSuffix(n, ".safetensors"):
			files = append(files, n)
		}
	}
	pick := func(cands []string, preferred ...string) (string, bool) {
		for _, p := range preferred {
			if slices.Contains(cands, p) {
				return p, true
			}
		}
		if len(cands) == 1 {
			return cands[0], true
		}
		return "", false
	}
	if len(indexes) > 0 {
		if p, ok := pick(indexes, "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"); ok {
			return p, true, nil
		}
		return "", false, fmt.Errorf("ambiguous shard indexes %s", strings.Join(indexes, ", "))
	}
	if p, ok := pick(files, "diffusion_pytorch_model.safetensors", "model.safetensors"); ok {
		return p, false, nil
	}
	if len(files) == 0 {
		return "", false, errors.New("no .safetensors weights")
	}
	return "", false, fmt.Errorf("several .safetensors files and no index: %s", strings.Join(files, ", "))
}

// indexShards reads the shard file names of a *.safetensors.index.json.
func indexShards(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: empty weight_map", file)
	}
	set := map[string]bool{}
	for _, s := range idx.WeightMap {
		if !localPath(s) || strings.Contains(s, "/") {
			return nil, fmt.Errorf("%s: bad shard name %q", file, s)
		}
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// componentWeights lists the weight files of one component given the names
// in its folder, reading an index from dir when one is picked.
func componentWeights(dir, comp string, names []string) ([]string, error) {
	p, isIndex, err := pickWeights(names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", comp, err)
	}
	if !isIndex {
		return []string{comp + "/" + p}, nil
	}
	shards, err := indexShards(filepath.Join(dir, comp, p))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", comp, err)
	}
	out := []string{comp + "/" + p}
	for _, s := range shards {
		out = append(out, comp+"/"+s)
	}
	return out, nil
}

func pipelineWeights(dir string, files, components []string) ([]string, error) {
	var out []string
	for _, comp := range components {
		var names []string
		for _, f := range files {
			if d, n := path.Split(f); d == comp+"/" {
				names = append(names, n)
			}
		}
		w, err := componentWeights(dir, comp, names)
		if err != nil {
			return nil, err
		}
		out = append(out, w...)
	}
	return out, nil
}

// pipelineComplete checks a local snapshot: every config, a tokenizer and,
// with weights, every weight file a component's index (or pick) names.
func pipelineComplete(dir string, components []string) error {
	need := []string{"model_index.json", "scheduler/scheduler_config.json"}
	for _, c := range weightComponents {
		need = append(need, c+"/config.json")
	}
	for _, f := range need {
		if !fileExists(filepath.Join(dir, filepath.FromSlash(f))) {
			return fmt.Errorf("%s is missing", f)
		}
	}
	tok := filepath.Join(dir, "tokenizer")
	if !fileExists(filepath.Join(tok, "tokenizer.json")) &&
		!(fileExists(filepath.Join(tok, "vocab.json")) && fileExists(filepath.Join(tok, "merges.txt"))) {
		return errors.New("tokenizer/tokenizer.json (or vocab.json + merges.txt) is missing")
	}
	for _, c := range components {
		ents, err := os.ReadDir(filepath.Join(dir, c))
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		files, err := componentWeights(dir, c, names)
		if err != nil {
			return err
		}
		for _, f := range files {
			if !fileExists(filepath.Join(dir, filepath.FromSlash(f))) {
				return fmt.Errorf("%s is missing", f)
			}
		}
	}
	return nil
}
