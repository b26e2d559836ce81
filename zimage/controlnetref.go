package zimage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/zimage/zimage/weights/hub"
)

// resolveControlNet turns a ControlNet reference into a local path: an
// existing file or directory as is; otherwise a repository id "Org/Name"
// or "Org/Name@revision", optionally followed by "/FILE.safetensors" to pick
// one of several files (the Union-2.0 repository holds the 2.0 and the 2.1
// file), looked up in the hub cache and downloaded when missing, like the
// model. From a repository only config.json and the weights are fetched:
// a diffusers-layout diffusion_pytorch_model.safetensors, else the only
// top-level .safetensors file.
func resolveControlNet(ctx context.Context, ref string, o *options, log *slog.Logger) (string, error) {
	if _, err := os.Stat(ref); err == nil {
		return ref, nil
	}
	repoRef, file := ref, ""
	if strings.HasSuffix(ref, ".safetensors") {
		if i := strings.Index(ref, "/"); i >= 0 {
			if j := strings.Index(ref[i+1:], "/"); j >= 0 {
				repoRef, file = ref[:i+1+j], ref[i+1+j+1:]
			}
		}
	}
	r, err := hub.ParseRef(repoRef)
	if err != nil || (file != "" && !filepath.IsLocal(filepath.FromSlash(file))) {
		return "", &ModelError{Ref: ref, Reason: "no such file or directory, and not a Hugging Face repository id (Org/Name[@revision][/FILE.safetensors])"}
	}
	c := hub.FromEnv()
	if o.hub != nil {
		cp := *o.hub
		c = &cp
	}
	if c.Logger == nil {
		c.Logger = log
	}
	if o.onDownload != nil {
		c.Progress = o.onDownload
	}
	sel := controlNetSelection(file)
	var snap *hub.Snapshot
	if o.noPull {
		snap, err = c.Cached(r, sel)
	} else {
		snap, err = c.Resolve(ctx, r, sel)
	}
	var he *hub.HTTPError
	if errors.As(err, &he) && (he.Status == 401 || he.Status == 404) {
		return "", &ModelError{Ref: ref, Reason: "not a local path, and the hub does not give access to such a repository", Err: err}
	}
	var nc *hub.NotCachedError
	if errors.As(err, &nc) {
		return "", &ModelError{Ref: ref, Reason: "not downloaded (pulling is disabled)", Err: err}
	}
	if err != nil {
		return "", err
	}
	w, err := controlNetWeights(snap.Dir, file)
	if err != nil {
		return "", &ModelError{Ref: ref, Reason: "no ControlNet weights in the repository", Err: err}
	}
	if w == "diffusion_pytorch_model.safetensors" {
		return snap.Dir, nil // diffusers layout: the directory, with its config.json
	}
	return filepath.Join(snap.Dir, filepath.FromSlash(w)), nil
}

// controlNetSelection picks config.json and the ControlNet weights of a
// repository (file, when named).
func controlNetSelection(file string) hub.Selection {
	return hub.Selection{
		First: func(f string) bool { return f == "config.json" || f == file },
		Then: func(dir string, all []string) ([]string, error) {
			if file != "" {
				return []string{file}, nil
			}
			var top []string
			for _, f := range all {
				if !strings.Contains(f, "/") && path.Ext(f) == ".safetensors" {
					top = append(top, f)
				}
			}
			w, err := pickControlNet(top)
			if err != nil {
				return nil, err
			}
			return []string{w}, nil
		},
		Complete: func(dir string) error { _, err := controlNetWeights(dir, file); return err },
	}
}

// controlNetWeights names the weights file of a downloaded snapshot.
func controlNetWeights(dir, file string) (string, error) {
	if file != "" {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(file))); err != nil {
			return "", fmt.Errorf("%s is missing", file)
		}
		return file, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var top []string
	for _, e := range ents {
		if !e.IsDir() && filepath.Ext(e.Name()) == ".safetensors" {
			top = append(top, e.Name())
		}
	}
	return pickControlNet(top)
}

func pickControlNet(top []string) (string, error) {
	for _, f := range top {
		if f == "diffusion_pytorch_model.safetensors" {
			return f, nil
		}
	}
	switch len(top) {
	case 0:
		return "", errors.New("no top-level .safetensors file")
	case 1:
		return top[0], nil
	}
	return "", fmt.Errorf("several .safetensors files (%s): name one as Org/Name/FILE.safetensors", strings.Join(top, ", "))
}
