package zimage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/weights/hub"
)

// DefaultModel is the model Load uses when given no reference and no
// complete set of single files.
const DefaultModel = hub.DefaultRepo

// ModelError reports a model reference that names nothing usable.
type ModelError struct {
	Ref    string
	Reason string
	Err    error
}

func (e *ModelError) Error() string {
	s := fmt.Sprintf("zimage: model %q: %s", e.Ref, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ModelError) Unwrap() error { return e.Err }

// openModel turns a model reference plus the single-file options into a
// weights.Model: a local diffusers directory (or a hub cache folder), a
// safetensors file (single-file/AIO transformer), or a repository id
// resolved through the hub cache and pulled when missing. Components given
// as single files replace the reference's; F32 weights are converted.
func openModel(ctx context.Context, ref string, o *options, log *slog.Logger) (*weights.Model, error) {
	sf := o.single
	if ref != "" && sf.transformer == "" {
		// A checkpoint file as the model: a single-file transformer or an
		// all-in-one checkpoint.
		if st, err := os.Stat(ref); err == nil && !st.IsDir() {
			sf.transformer, ref = ref, ""
		}
	}
	have := map[string]string{}
	for c, p := range map[string]string{weights.CompTransformer: sf.transformer, weights.CompTextEncoder: sf.textEncoder, weights.CompVAE: sf.vae} {
		if p != "" {
			have[c] = p
		}
	}
	// An all-in-one transformer file supplies the parts not named otherwise.
	if sf.transformer != "" && len(have) < 3 {
		s, err := weights.Open(sf.transformer)
		if err != nil {
			return nil, err
		}
		for _, p := range weights.DetectParts(s) {
			if _, ok := have[p.Component]; !ok {
				have[p.Component] = sf.transformer
			}
		}
		s.Close()
	}
	var missing []string
	for _, c := range []string{weights.CompTransformer, weights.CompTextEncoder, weights.CompVAE} {
		if _, ok := have[c]; !ok {
			missing = append(missing, c)
		}
	}

	if sf.tokenizer == "" && ref == "" && len(missing) == 0 {
		// A llama.cpp GGUF text encoder carries the vocabulary (gguf.go).
		sf.tokenizer = ggufTokenizer(have[weights.CompTextEncoder])
	}
	var m *weights.Model
	var repoDir string // the hub cache folder of the model, if any
	if ref == "" && len(missing) == 0 && sf.tokenizer != "" {
		var err error
		if m, err = weights.OpenSingleFiles(have[weights.CompTransformer], have[weights.CompTextEncoder], have[weights.CompVAE], sf.tokenizer); err != nil {
			return nil, err
		}
	} else {
		if ref == "" {
			ref = DefaultModel
			log.Info("zimage: no model given, using the default", "model", ref)
		}
		dir, rd, err := resolveRef(ctx, ref, missing, o, log)
		if err != nil {
			return nil, err
		}
		repoDir = rd
		if m, err = weights.OpenModel(dir); err != nil {
			return nil, err
		}
		for _, c := range []string{weights.CompTransformer, weights.CompTextEncoder, weights.CompVAE} {
			if p, ok := have[c]; ok {
				if err := m.UseFile(c, p); err != nil {
					return nil, err
				}
			}
		}
		if sf.tokenizer != "" {
			if err := m.UseTokenizer(sf.tokenizer); err != nil {
				return nil, err
			}
		}
	}

	if !o.keepF32 {
		cache := o.convertDir
		if cache == "" && repoDir != "" {
			cache = filepath.Join(repoDir, "zimage-converted")
		}
		if cache == "" {
			uc, err := os.UserCacheDir()
			if err != nil {
				log.Warn("zimage: no cache directory for converted weights; using float32 weights as stored", "err", err)
				return m, nil
			}
			cache = filepath.Join(uc, "zimage", "converted")
		}
		done, err := m.ConvertF32(weights.BF16, cache, []string{weights.CompTransformer, weights.CompTextEncoder},
			weights.WithLogger(log), weights.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if len(done) > 0 {
			log.Info("zimage: using bf16 copies of float32 weights", "components", done, "cache", cache)
		}
	}
	return m, nil
}

// resolveRef finds the model directory a reference names: an existing
// directory (a hub cache repository folder resolves through refs/main), or
// a repository id looked up in the hub cache and pulled when missing (only
// configs, the tokenizer and the weights of the components in need). It
// also returns the hub cache folder of the repository, if any.
func resolveRef(ctx context.Context, ref string, need []string, o *options, log *slog.Logger) (dir, repoDir string, err error) {
	if st, err := os.Stat(ref); err == nil && st.IsDir() {
		repo, commit, inCache := hub.CachePath(ref)
		switch {
		case inCache && commit == "":
			snap, err := hub.RepoSnapshot(ref, "")
			if err != nil {
				return "", "", &ModelError{Ref: ref, Reason: "hub cache folder without a usable refs/main", Err: err}
			}
			log.Debug("zimage: hub cache folder", "repo", repo, "snapshot", snap)
			return snap, ref, nil
		case inCache:
			return ref, filepath.Dir(filepath.Dir(filepath.Clean(ref))), nil
		}
		return ref, "", nil
	}
	r, perr := hub.ParseRef(ref)
	if perr != nil {
		return "", "", &ModelError{Ref: ref, Reason: "no such file or directory, and not a Hugging Face repository id (Org/Name[@revision])"}
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
	sel := hub.Pipeline(need...)
	var snap *hub.Snapshot
	if o.noPull {
		snap, err = c.Cached(r, sel)
		var nc *hub.NotCachedError
		if errors.As(err, &nc) {
			return "", "", &ModelError{Ref: ref, Reason: "not downloaded (pulling is disabled; run `zimage pull " + r.String() + "`)", Err: err}
		}
	} else {
		snap, err = c.Resolve(ctx, r, sel)
	}
	var he *hub.HTTPError
	if errors.As(err, &he) && (he.Status == 401 || he.Status == 404) {
		return "", "", &ModelError{Ref: ref, Reason: "not a local directory, and the hub does not give access to such a repository", Err: err}
	}
	if err != nil {
		return "", "", err
	}
	if snap.Downloaded > 0 {
		log.Info("zimage: downloaded", "model", r.String(), "commit", snap.Commit, "bytes", snap.Downloaded)
	}
	return snap.Dir, c.RepoDir(r.Repo), nil
}
