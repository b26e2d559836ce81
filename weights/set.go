package weights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Set is the tensors of one component, gathered from one safetensors file or
// from the shards listed in a *.safetensors.index.json. Names are unique
// across the set.
type Set struct {
	path    string // what Open was given
	index   string // the index file, "" for a single file
	files   []*File
	gguf    *GGUFFile // the GGUF file of a set opened from one (files is then empty)
	total   int64     // the index's metadata.total_size, -1 if unknown
	tensors map[string]*Tensor
	names   []string // sorted
}

// Open opens a component's tensors from path, which is a .safetensors file,
// a *.safetensors.index.json shard index, or a directory holding either. In a
// directory an index is preferred (diffusion_pytorch_model.safetensors.index.json,
// then model.safetensors.index.json, then the only *.safetensors.index.json);
// otherwise the single *.safetensors file (preferring the same base names).
func Open(path string) (*Set, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if st.IsDir() {
		p, isIndex, err := pickInDir(path)
		if err != nil {
			return nil, err
		}
		if isIndex {
			return openIndex(p, path)
		}
		return openSingle(p, path)
	}
	if strings.HasSuffix(path, ".json") {
		return openIndex(path, path)
	}
	if IsGGUF(path) {
		return openGGUFSet(path)
	}
	return openSingle(path, path)
}

// pickInDir chooses the file Open reads in a component directory.
func pickInDir(dir string) (string, bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", false, fmt.Errorf("weights: %w", err)
	}
	var indexes, files []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		switch n := e.Name(); {
		case strings.HasSuffix(n, ".safetensors.index.json"):
			indexes = append(indexes, n)
		case strings.HasSuffix(n, ".safetensors"):
			files = append(files, n)
		}
	}
	pick := func(cands []string, preferred ...string) (string, error) {
		for _, p := range preferred {
			if slices.Contains(cands, p) {
				return p, nil
			}
		}
		if len(cands) == 1 {
			return cands[0], nil
		}
		return "", fmt.Errorf("%d candidates (%s) and none has a standard name", len(cands), strings.Join(cands, ", "))
	}
	if len(indexes) > 0 {
		p, err := pick(indexes, "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")
		if err != nil {
			return "", false, &SetError{Path: dir, Reason: "ambiguous shard index: " + err.Error()}
		}
		return filepath.Join(dir, p), true, nil
	}
	if len(files) == 0 {
		return "", false, &SetError{Path: dir, Reason: "no *.safetensors file or *.safetensors.index.json in directory"}
	}
	p, err := pick(files, "diffusion_pytorch_model.safetensors", "model.safetensors")
	if err != nil {
		return "", false, &SetError{Path: dir, Reason: "several .safetensors files and no index: " + err.Error()}
	}
	return filepath.Join(dir, p), false, nil
}

func openSingle(file, path string) (*Set, error) {
	f, err := OpenFile(file)
	if err != nil {
		return nil, err
	}
	s := &Set{path: path, files: []*File{f}, tensors: f.tensors, total: -1}
	s.names = slices.Sorted(maps.Keys(f.tensors))
	return s, nil
}

// shardIndex is a parsed *.safetensors.index.json.
type shardIndex struct {
	weightMap map[string]string // tensor → shard file (relative)
	shards    []string          // sorted, unique
	totalSize int64             // metadata.total_size, -1 if absent
}

// parseIndex validates an index: a JSON object with a "weight_map" object of
// tensor name → shard file name, each a plain relative path inside the
// index's directory. "metadata" may hold anything.
func parseIndex(file string, data []byte) (*shardIndex, error) {
	bad := func(tensor, shard, format string, args ...any) error {
		return &IndexError{File: file, Tensor: tensor, Shard: shard, Reason: fmt.Sprintf(format, args...)}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		if err == nil {
			err = fmt.Errorf("null")
		}
		return nil, bad("", "", "not a JSON object: %v", jsonReason(err))
	}
	raw, ok := top["weight_map"]
	if !ok {
		return nil, bad("", "", `missing "weight_map"`)
	}
	idx := &shardIndex{weightMap: map[string]string{}, totalSize: -1}
	if m, ok := top["metadata"]; ok {
		var meta struct {
			TotalSize *json.Number `json:"total_size"`
		}
		if json.Unmarshal(m, &meta) == nil && meta.TotalSize != nil {
			if v, err := meta.TotalSize.Int64(); err == nil && v >= 0 {
				idx.totalSize = v
			}
		}
	}
	// Walk the weight_map with a token decoder so duplicate names are caught
	// (encoding/json would silently keep the last).
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad("", "", "weight_map is not a JSON object")
	}
	shards := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad("", "", "weight_map: %v", err)
		}
		name, _ := tok.(string)
		tok, err = dec.Token()
		if err != nil {
			return nil, bad(name, "", "weight_map: %v", err)
		}
		shard, ok := tok.(string)
		if !ok {
			return nil, bad(name, "", "shard file name is not a string")
		}
		if name == "" {
			return nil, bad(name, shard, "empty tensor name")
		}
		if _, dup := idx.weightMap[name]; dup {
			return nil, bad(name, "", "listed twice in weight_map")
		}
		if !localName(shard) {
			return nil, bad(name, shard, "shard file name must be a plain relative path inside the index's directory")
		}
		idx.weightMap[name] = shard
		shards[shard] = true
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad("", "", "weight_map: %v", err)
	}
	if len(idx.weightMap) == 0 {
		return nil, bad("", "", "weight_map is empty")
	}
	idx.shards = slices.Sorted(maps.Keys(shards))
	return idx, nil
}

// localName reports whether a shard name is a clean relative path that stays
// inside the index's directory (no "..", no absolute or volume paths).
func localName(name string) bool {
	if name == "" || strings.ContainsRune(name, '\\') || strings.ContainsRune(name, 0) {
		return false
	}
	return filepath.IsLocal(name) && filepath.Clean(name) == name
}

// openIndex opens every shard listed in the index once and checks that each
// tensor is in the shard the index names and in no other.
func openIndex(indexPath, path string) (_ *Set, err error) {
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	idx, err := parseIndex(indexPath, data)
	if err != nil {
		return nil, err
	}
	s := &Set{path: path, index: indexPath, total: idx.totalSize, tensors: make(map[string]*Tensor, len(idx.weightMap))}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	dir := filepath.Dir(indexPath)
	for _, shard := range idx.shards {
		f, err := OpenFile(filepath.Join(dir, filepath.FromSlash(shard)))
		if err != nil {
			return nil, &IndexError{File: indexPath, Shard: shard, Err: err}
		}
		s.files = append(s.files, f)
		for _, name := range f.names {
			want, listed := idx.weightMap[name]
			switch {
			case !listed:
				return nil, &IndexError{File: indexPath, Tensor: name, Shard: shard, Reason: "tensor is in the shard but not in weight_map"}
			case want != shard:
				return nil, &IndexError{File: indexPath, Tensor: name, Shard: shard, Reason: fmt.Sprintf("tensor is also stored here, but weight_map places it in %q", want)}
			}
			s.tensors[name] = f.tensors[name]
		}
	}
	for name, shard := range idx.weightMap {
		if _, ok := s.tensors[name]; !ok {
			return nil, &IndexError{File: indexPath, Tensor: name, Shard: shard, Reason: "tensor listed in weight_map is not in its shard"}
		}
	}
	s.names = slices.Sorted(maps.Keys(s.tensors))
	return s, nil
}

// Tensor returns the named tensor (shared; treat it as read-only).
func (s *Set) Tensor(name string) (*Tensor, bool) {
	t, ok := s.tensors[name]
	return t, ok
}

// Names returns the tensor names, sorted.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Len returns the number of tensors.
func (s *Set) Len() int { return len(s.names) }

// Files returns the paths of the safetensors files in the set.
func (s *Set) Files() []string {
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.path
	}
	if s.gguf != nil {
		out = append(out, s.gguf.path)
	}
	return out
}

// Index returns the shard index the set was read from, or "".
func (s *Set) Index() string { return s.index }

// IndexTotalSize returns the index's metadata.total_size, or -1 when the set
// has no index or the index does not state it. It is informational only.
func (s *Set) IndexTotalSize() int64 { return s.total }

// Path returns the path given to Open.
func (s *Set) Path() string { return s.path }

// Metadata returns the "__metadata__" of the set's files merged (the first
// file in Files order wins on conflicting keys); nil if none has any.
func (s *Set) Metadata() map[string]string {
	var m map[string]string
	for _, f := range s.files {
		for k, v := range f.hdr.meta {
			if m == nil {
				m = map[string]string{}
			}
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
	}
	return m
}

// Close unmaps every file of the set. Sets made by Rename share the files:
// closing any of them closes all; closing twice is harmless.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	if s.gguf != nil {
		if err := s.gguf.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Rename returns a Set with every name mapped through fn; fn returns "" to
// drop a tensor. Two tensors mapped to the same name are an error. The new
// Set shares the files (and their lifetime) with s.
func (s *Set) Rename(fn func(string) string) (*Set, error) {
	out := &Set{path: s.path, index: s.index, files: s.files, gguf: s.gguf, total: s.total, tensors: make(map[string]*Tensor, len(s.tensors))}
	from := make(map[string]string, len(s.tensors))
	for _, name := range s.names {
		nn := fn(name)
		if nn == "" {
			continue
		}
		if prev, dup := from[nn]; dup {
			return nil, &SetError{Path: s.path, Tensor: nn, Reason: fmt.Sprintf("both %q and %q are renamed to it", prev, name)}
		}
		from[nn] = name
		t := *s.tensors[name]
		t.Name = nn
		out.tensors[nn] = &t
	}
	out.names = slices.Sorted(maps.Keys(out.tensors))
	return out, nil
}
