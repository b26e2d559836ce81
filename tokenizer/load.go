package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FormatError reports a tokenizer file whose content cannot be used: bad
// JSON, a missing or inconsistent entry, or a pipeline this package does not
// implement (it implements the Qwen2/Qwen3 one only).
type FormatError struct {
	File   string // the file
	Field  string // the JSON field or line, if known
	Reason string
}

func (e *FormatError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("tokenizer: %s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("tokenizer: %s: %s: %s", e.File, e.Field, e.Reason)
}

// Load reads a tokenizer. path is one of: a model directory (its tokenizer/
// subdirectory is used), a tokenizer directory, a tokenizer.json file, or a
// directory with vocab.json and merges.txt (plus tokenizer_config.json, whose
// added_tokens_decoder gives the added tokens). A directory's tokenizer.json
// is preferred over vocab.json + merges.txt.
func Load(path string) (*Tokenizer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !fi.IsDir() {
		switch filepath.Base(path) {
		case "vocab.json", "merges.txt":
			return loadVocabMerges(filepath.Dir(path))
		}
		return loadTokenizerJSON(path)
	}
	for _, dir := range []string{path, filepath.Join(path, "tokenizer")} {
		if isFile(filepath.Join(dir, "tokenizer.json")) {
			return loadTokenizerJSON(filepath.Join(dir, "tokenizer.json"))
		}
		if isFile(filepath.Join(dir, "vocab.json")) && isFile(filepath.Join(dir, "merges.txt")) {
			return loadVocabMerges(dir)
		}
	}
	return nil, fmt.Errorf("tokenizer: %s: no tokenizer.json, or vocab.json and merges.txt, in it or in its tokenizer/ directory: %w", path, fs.ErrNotExist)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// addedJSON is an entry of tokenizer.json's added_tokens or of
// tokenizer_config.json's added_tokens_decoder.
type addedJSON struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// typed is the common shape of the pipeline components of tokenizer.json.
type typed struct {
	Type           string          `json:"type"`
	Pattern        json.RawMessage `json:"pattern"`
	Behavior       string          `json:"behavior"`
	Invert         bool            `json:"invert"`
	AddPrefixSpace bool            `json:"add_prefix_space"`
	UseRegex       bool            `json:"use_regex"`
	PreTokenizers  []typed         `json:"pretokenizers"`
	Normalizers    []typed         `json:"normalizers"`
}

type tokenizerJSON struct {
	AddedTokens   []addedJSON `json:"added_tokens"`
	Normalizer    *typed      `json:"normalizer"`
	PreTokenizer  *typed      `json:"pre_tokenizer"`
	PostProcessor *typed      `json:"post_processor"`
	Decoder       *typed      `json:"decoder"`
	Model         struct {
		Type                    string          `json:"type"`
		Dropout                 *float64        `json:"dropout"`
		ContinuingSubwordPrefix string          `json:"continuing_subword_prefix"`
		EndOfWordSuffix         string          `json:"end_of_word_suffix"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
	} `json:"model"`
}

func loadTokenizerJSON(file string) (*Tokenizer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var tj tokenizerJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, &FormatError{File: file, Reason: "bad JSON: " + err.Error()}
	}
	if err := checkPipeline(file, &tj); err != nil {
		return nil, err
	}
	merges, err := parseMergesJSON(file, tj.Model.Merges)
	if err != nil {
		return nil, err
	}
	return build(file, tj.Model.Vocab, merges, tj.AddedTokens)
}

// checkPipeline verifies that tokenizer.json describes the pipeline this
// package implements, so that a different tokenizer fails loudly instead of
// encoding wrongly.
func checkPipeline(file string, tj *tokenizerJSON) error {
	bad := func(field, format string, args ...any) error {
		return &FormatError{File: file, Field: field, Reason: fmt.Sprintf(format, args...) + " (only the Qwen2/Qwen3 tokenizer is supported)"}
	}
	if n := tj.Normalizer; n == nil || n.Type != "NFC" {
		return bad("normalizer", "want NFC")
	}
	p := tj.PreTokenizer
	if p == nil || p.Type != "Sequence" || len(p.PreTokenizers) != 2 {
		return bad("pre_tokenizer", "want a Sequence of Split and ByteLevel")
	}
	split, bl := p.PreTokenizers[0], p.PreTokenizers[1]
	var pat struct{ Regex string }
	if split.Type != "Split" || json.Unmarshal(split.Pattern, &pat) != nil || pat.Regex != qwenPattern {
		return bad("pre_tokenizer.pretokenizers[0]", "want Split with the Qwen regex %q", qwenPattern)
	}
	if split.Behavior != "Isolated" || split.Invert {
		return bad("pre_tokenizer.pretokenizers[0]", "want behavior Isolated, invert false")
	}
	if bl.Type != "ByteLevel" || bl.AddPrefixSpace || bl.UseRegex {
		return bad("pre_tokenizer.pretokenizers[1]", "want ByteLevel with add_prefix_space and use_regex false")
	}
	if d := tj.Decoder; d != nil && d.Type != "ByteLevel" {
		return bad("decoder", "type %q, want ByteLevel", d.Type)
	}
	if pp := tj.PostProcessor; pp != nil && pp.Type != "ByteLevel" {
		return bad("post_processor", "type %q, want ByteLevel or none", pp.Type)
	}
	m := &tj.Model
	switch {
	case m.Type != "BPE":
		return bad("model.type", "%q, want BPE", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return bad("model.dropout", "BPE dropout is not supported")
	case m.ContinuingSubwordPrefix != "" || m.EndOfWordSuffix != "":
		return bad("model", "subword prefixes and suffixes are not supported")
	case m.IgnoreMerges:
		return bad("model.ignore_merges", "not supported")
	}
	return nil
}

// parseMergesJSON accepts both merges formats of tokenizer.json: ["a b", …]
// and [["a", "b"], …].
func parseMergesJSON(file string, raw json.RawMessage) ([][2]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, &FormatError{File: file, Field: "model.merges", Reason: "missing"}
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, &FormatError{File: file, Field: "model.merges", Reason: "want a list of pairs or of \"a b\" strings"}
	}
	pairs = make([][2]string, len(lines))
	for i, l := range lines {
		a, b, ok := strings.Cut(l, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, &FormatError{File: file, Field: fmt.Sprintf("model.merges[%d]", i), Reason: fmt.Sprintf("%q is not a pair", l)}
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// loadVocabMerges reads the slow-tokenizer files of a directory. Their
// pipeline is implied by the tokenizer class (Qwen2Tokenizer): NFC, the Qwen
// regex, byte-level BPE.
func loadVocabMerges(dir string) (*Tokenizer, error) {
	vocabFile := filepath.Join(dir, "vocab.json")
	data, err := os.ReadFile(vocabFile)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, &FormatError{File: vocabFile, Reason: "bad JSON: " + err.Error()}
	}
	mergesFile := filepath.Join(dir, "merges.txt")
	merges, err := readMergesTxt(mergesFile)
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "tokenizer_config.json")
	data, err = os.ReadFile(cfgFile)
	if err != nil {
		// Without it the chat-template tokens would be BPE'd as plain text.
		return nil, fmt.Errorf("tokenizer: %s: the added tokens are in tokenizer_config.json next to vocab.json: %w", dir, err)
	}
	var cfg struct {
		Added map[string]addedJSON `json:"added_tokens_decoder"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, &FormatError{File: cfgFile, Reason: "bad JSON: " + err.Error()}
	}
	added := make([]addedJSON, 0, len(cfg.Added))
	for key, a := range cfg.Added {
		id, err := strconv.Atoi(key)
		if err != nil {
			return nil, &FormatError{File: cfgFile, Field: "added_tokens_decoder", Reason: fmt.Sprintf("key %q is not a token id", key)}
		}
		a.ID = &id
		added = append(added, a)
	}
	return build(vocabFile, vocab, merges, added)
}

func readMergesTxt(file string) ([][2]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	var pairs [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" || (line == 1 && strings.HasPrefix(l, "#version")) {
			continue
		}
		a, b, ok := strings.Cut(l, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, &FormatError{File: file, Field: fmt.Sprintf("line %d", line), Reason: fmt.Sprintf("%q is not a pair", l)}
		}
		pairs = append(pairs, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file, err)
	}
	return pairs, nil
}

// build assembles a Tokenizer from a byte-level vocabulary, ranked merges and
// added tokens. file names the source in errors.
func build(file string, vocab map[string]int, merges [][2]string, added []addedJSON) (*Tokenizer, error) {
	if len(vocab) == 0 {
		return nil, &FormatError{File: file, Field: "vocab", Reason: "empty"}
	}
	maxID := -1
	for tok, id := range vocab {
		if id < 0 || id >= 1<<30 {
			return nil, &FormatError{File: file, Field: "vocab", Reason: fmt.Sprintf("token %q has id %d", tok, id)}
		}
		maxID = max(maxID, id)
	}
	for i, a := range added {
		if a.ID == nil || *a.ID < 0 || *a.ID >= 1<<30 {
			return nil, &FormatError{File: file, Field: fmt.Sprintf("added token %d (%q)", i, a.Content), Reason: "missing or bad id"}
		}
		maxID = max(maxID, *a.ID)
	}

	t := &Tokenizer{tokens: make([]string, maxID+1)}
	rawID := make(map[string]int32, len(vocab))
	for tok, id := range vocab {
		raw, ok := unByteLevel(tok)
		if !ok || raw == "" {
			return nil, &FormatError{File: file, Field: "vocab", Reason: fmt.Sprintf("token %q (id %d) is not in the byte-level alphabet", tok, id)}
		}
		if t.tokens[id] != "" {
			return nil, &FormatError{File: file, Field: "vocab", Reason: fmt.Sprintf("id %d is used twice", id)}
		}
		t.tokens[id] = raw
		rawID[raw] = int32(id)
	}
	for b := 0; b < 256; b++ {
		id, ok := rawID[string([]byte{byte(b)})]
		if !ok {
			return nil, &FormatError{File: file, Field: "vocab", Reason: fmt.Sprintf("no token for byte 0x%02x", b)}
		}
		t.byteID[b] = id
	}

	t.merges = make(map[uint64]uint64, len(merges))
	for rank, m := range merges {
		field := func() string { return fmt.Sprintf("merges[%d] (%q %q)", rank, m[0], m[1]) }
		a, okA := unByteLevel(m[0])
		b, okB := unByteLevel(m[1])
		if !okA || !okB {
			return nil, &FormatError{File: file, Field: field(), Reason: "not in the byte-level alphabet"}
		}
		left, okA := rawID[a]
		right, okB := rawID[b]
		merged, okM := rawID[a+b]
		if !okA || !okB || !okM {
			return nil, &FormatError{File: file, Field: field(), Reason: "a part or the merged token is not in the vocabulary"}
		}
		// A repeated pair keeps its last rank, as the reference's map does.
		t.merges[pairKey(left, right)] = uint64(rank)<<32 | uint64(merged)
	}

	var raw, normd []addedToken
	for i, a := range added {
		field := fmt.Sprintf("added token %d (%q)", i, a.Content)
		switch {
		case a.Content == "":
			return nil, &FormatError{File: file, Field: field, Reason: "empty content"}
		case a.LStrip || a.RStrip || a.SingleWord:
			return nil, &FormatError{File: file, Field: field, Reason: "lstrip, rstrip and single_word are not supported"}
		}
		at := addedToken{content: a.Content, id: int32(*a.ID)}
		// The reference decodes an added token's id to its content even when
		// the vocabulary has the id too.
		t.tokens[at.id] = a.Content
		if a.Normalized {
			normd = append(normd, at)
		} else {
			raw = append(raw, at)
		}
	}
	t.raw, t.normd, t.hasNorm = newAddedSet(raw), newAddedSet(normd), len(normd) > 0
	return t, nil
}
