package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
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
}

// tokenizerJSON is tokenizer.json without the vocabulary and merges, which
// are read by jscan.
type tokenizerJSON struct {
	AddedTokens   []addedJSON `json:"added_tokens"`
	Normalizer    *typed      `json:"normalizer"`
	PreTokenizer  *typed      `json:"pre_tokenizer"`
	PostProcessor *typed      `json:"post_processor"`
	Decoder       *typed      `json:"decoder"`
	Model         struct {
		Type                    string   `json:"type"`
		Dropout                 *float64 `json:"dropout"`
		ContinuingSubwordPrefix string   `json:"continuing_subword_prefix"`
		EndOfWordSuffix         string   `json:"end_of_word_suffix"`
		IgnoreMerges            bool     `json:"ignore_merges"`
	} `json:"model"`
}

func loadTokenizerJSON(file string) (*Tokenizer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	// Split the document: the vocabulary and merges (99% of it) for jscan,
	// the rest for encoding/json.
	var vocab, merges []byte
	top, model := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	s := &jscan{data: data}
	field := ""
	err = s.object(func(key []byte) error {
		if string(key) != "model" {
			field = string(key)
			raw, err := s.skip()
			top[field] = raw
			return err
		}
		return s.object(func(key []byte) error {
			field = "model." + string(key)
			raw, err := s.skip()
			switch string(key) {
			case "vocab":
				vocab = raw
			case "merges":
				merges = raw
			default:
				model[string(key)] = raw
			}
			return err
		})
	})
	if err == nil && s.peek() != 0 {
		err = s.fail("data after the top-level object")
	}
	if err != nil {
		return nil, &FormatError{File: file, Field: field, Reason: err.Error()}
	}
	if top["model"], err = json.Marshal(model); err == nil {
		var rest []byte
		if rest, err = json.Marshal(top); err == nil {
			var tj tokenizerJSON
			if err = json.Unmarshal(rest, &tj); err == nil {
				return loadParsed(file, &tj, vocab, merges)
			}
		}
	}
	return nil, &FormatError{File: file, Reason: "bad JSON: " + err.Error()}
}

func loadParsed(file string, tj *tokenizerJSON, vocab, merges []byte) (*Tokenizer, error) {
	if err := checkPipeline(file, tj); err != nil {
		return nil, err
	}
	b := &builder{file: file}
	if err := b.vocabJSON(vocab, "model.vocab"); err != nil {
		return nil, err
	}
	if err := b.finishVocab(tj.AddedTokens); err != nil {
		return nil, err
	}
	if err := b.mergesJSON(merges, "model.merges"); err != nil {
		return nil, err
	}
	return b.t, nil
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

// loadVocabMerges reads the slow-tokenizer files of a directory. Their
// pipeline is implied by the tokenizer class (Qwen2Tokenizer): NFC, the Qwen
// regex, byte-level BPE.
func loadVocabMerges(dir string) (*Tokenizer, error) {
	cfgFile := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(cfgFile)
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
	// Map order is random; the reference keeps id order.
	slices.SortFunc(added, func(x, y addedJSON) int { return *x.ID - *y.ID })

	b := &builder{file: filepath.Join(dir, "vocab.json")}
	if data, err = os.ReadFile(b.file); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if err := b.vocabJSON(data, ""); err != nil {
		return nil, err
	}
	if err := b.finishVocab(added); err != nil {
		return nil, err
	}
	b.file = filepath.Join(dir, "merges.txt")
	if data, err = os.ReadFile(b.file); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if err := b.mergesTxt(data); err != nil {
		return nil, err
	}
	return b.t, nil
}

// builder assembles a Tokenizer from a byte-level vocabulary, ranked merges
// and added tokens, without a string allocation per entry.
type builder struct {
	file  string // named in errors
	t     *Tokenizer
	arena []byte     // raw bytes of all vocabulary tokens
	ents  []vocabEnt // vocabulary entries, in file order
	rawID map[string]int32
	rank  int    // next merge rank
	ka    []byte // scratch: a JSON string
	kb    []byte // scratch: a JSON string
	ra    []byte // scratch: raw bytes of a merge's left part
	rb    []byte // scratch: raw bytes of a merge's right part
	rm    []byte // scratch: raw bytes of the merged token
}

type vocabEnt struct{ off, n, id int32 }

func (b *builder) errorf(field, format string, args ...any) error {
	return &FormatError{File: b.file, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// appendUnByteLevel appends the raw bytes of a byte-level token string.
func appendUnByteLevel(dst, tok []byte) ([]byte, bool) {
	for len(tok) > 0 {
		r, n := utf8.DecodeRune(tok)
		if int(r) >= len(runeToByte) || runeToByte[r] < 0 {
			return dst, false
		}
		dst = append(dst, byte(runeToByte[r]))
		tok = tok[n:]
	}
	return dst, true
}

// vocabJSON reads a {"token": id, …} object (field names it in errors; ""
// for a whole file).
func (b *builder) vocabJSON(data []byte, field string) error {
	if len(data) == 0 {
		return b.errorf(field, "missing")
	}
	s := &jscan{data: data}
	b.arena = make([]byte, 0, len(data)/2)
	b.ents = make([]vocabEnt, 0, len(data)/16)
	err := s.object(func(key []byte) error {
		id, err := s.int()
		if err != nil {
			return err
		}
		off := len(b.arena)
		var ok bool
		if b.arena, ok = appendUnByteLevel(b.arena, key); !ok || len(key) == 0 {
			return fmt.Errorf("token %q (id %d) is not in the byte-level alphabet", key, id)
		}
		if id >= 1<<30 {
			return fmt.Errorf("token %q has id %d", key, id)
		}
		b.ents = append(b.ents, vocabEnt{int32(off), int32(len(b.arena) - off), int32(id)})
		return nil
	})
	if err == nil && s.peek() != 0 {
		err = s.fail("data after the vocabulary")
	}
	if err != nil {
		return b.errorf(field, "%v", err)
	}
	if len(b.ents) == 0 {
		return b.errorf(field, "empty vocabulary")
	}
	return nil
}

// finishVocab indexes the vocabulary and adds the added tokens.
func (b *builder) finishVocab(added []addedJSON) error {
	maxID := -1
	for _, e := range b.ents {
		maxID = max(maxID, int(e.id))
	}
	for i, a := range added {
		if a.ID == nil || *a.ID < 0 || *a.ID >= 1<<30 {
			return b.errorf(fmt.Sprintf("added token %d (%q)", i, a.Content), "missing or bad id")
		}
		maxID = max(maxID, *a.ID)
	}
	t := &Tokenizer{tokens: make([]string, maxID+1)}
	b.t = t
	arena := string(b.arena) // one allocation backs every token string
	b.arena = nil
	b.rawID = make(map[string]int32, len(b.ents))
	for _, e := range b.ents {
		raw := arena[e.off : e.off+e.n]
		if t.tokens[e.id] != "" {
			return b.errorf("vocab", "id %d is used twice", e.id)
		}
		if _, dup := b.rawID[raw]; dup {
			return b.errorf("vocab", "token %q appears twice", raw)
		}
		t.tokens[e.id] = raw
		b.rawID[raw] = e.id
	}
	for c := 0; c < 256; c++ {
		id, ok := b.rawID[string([]byte{byte(c)})]
		if !ok {
			return b.errorf("vocab", "no token for byte 0x%02x", c)
		}
		t.byteID[c] = id
	}
	t.merges = newMergeTable(len(b.ents))

	var raw, normd []addedToken
	for i, a := range added {
		field := fmt.Sprintf("added token %d (%q)", i, a.Content)
		switch {
		case a.Content == "":
			return b.errorf(field, "empty content")
		case a.LStrip || a.RStrip || a.SingleWord:
			return b.errorf(field, "lstrip, rstrip and single_word are not supported")
		}
		at := addedToken{content: a.Content, id: int32(*a.ID)}
		// The reference decodes an added token's id to its content even when
		// the vocabulary has the id too, through the byte-level decoder: a
		// content entirely in the byte-level alphabet is mapped back to bytes,
		// any other is kept as it is.
		if rb, ok := appendUnByteLevel(nil, []byte(a.Content)); ok {
			t.tokens[at.id] = string(rb)
		} else {
			t.tokens[at.id] = a.Content
		}
		if a.Normalized {
			normd = append(normd, at)
		} else {
			raw = append(raw, at)
		}
	}
	t.raw, t.normd, t.hasNorm = newAddedSet(raw), newAddedSet(normd), len(normd) > 0
	return nil
}

// addMerge adds the next-ranked merge of two byte-level token strings.
func (b *builder) addMerge(left, right []byte, field func() string) error {
	var okA, okB bool
	b.ra, okA = appendUnByteLevel(b.ra[:0], left)
	b.rb, okB = appendUnByteLevel(b.rb[:0], right)
	if !okA || !okB || len(left) == 0 || len(right) == 0 {
		return b.errorf(field(), "%q %q is not a pair of byte-level tokens", left, right)
	}
	l, okA := b.rawID[string(b.ra)]
	r, okB := b.rawID[string(b.rb)]
	b.rm = append(append(b.rm[:0], b.ra...), b.rb...)
	m, okM := b.rawID[string(b.rm)]
	if !okA || !okB || !okM {
		return b.errorf(field(), "%q %q: a part or the merged token is not in the vocabulary", left, right)
	}
	// A repeated pair keeps its last rank, as the reference's map does.
	b.t.merges.put(pairKey(l, r), uint64(b.rank)<<32|uint64(uint32(m)))
	b.rank++
	return nil
}

// mergesJSON reads tokenizer.json's merges in either format: ["a b", …] or
// [["a", "b"], …].
func (b *builder) mergesJSON(data []byte, field string) error {
	if len(data) == 0 {
		return b.errorf(field, "missing")
	}
	s := &jscan{data: data}
	fieldN := func() string { return fmt.Sprintf("%s[%d]", field, b.rank) }
	if err := s.expect('['); err != nil {
		return b.errorf(field, "%v", err)
	}
	for first := true; ; first = false {
		ok, err := s.more(first, ']')
		if err != nil {
			return b.errorf(fieldN(), "%v", err)
		}
		if !ok {
			break
		}
		var left, right []byte
		if s.peek() == '"' {
			if b.ka, err = s.str(b.ka[:0]); err != nil {
				return b.errorf(fieldN(), "%v", err)
			}
			var found bool
			if left, right, found = bytes.Cut(b.ka, []byte(" ")); !found || bytes.IndexByte(right, ' ') >= 0 {
				return b.errorf(fieldN(), "%q is not a pair", b.ka)
			}
		} else {
			err := s.expect('[')
			if err == nil {
				b.ka, err = s.str(b.ka[:0])
			}
			if err == nil {
				err = s.expect(',')
			}
			if err == nil {
				b.kb, err = s.str(b.kb[:0])
			}
			if err == nil {
				err = s.expect(']')
			}
			if err != nil {
				return b.errorf(fieldN(), "want a pair of strings: %v", err)
			}
			left, right = b.ka, b.kb
		}
		if err := b.addMerge(left, right, fieldN); err != nil {
			return err
		}
	}
	return nil
}

// mergesTxt reads merges.txt: an optional "#version" line, then one
// "left right" pair per line.
func (b *builder) mergesTxt(data []byte) error {
	for line := 1; len(data) > 0; line++ {
		var l []byte
		l, data, _ = bytes.Cut(data, []byte("\n"))
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 || (line == 1 && bytes.HasPrefix(l, []byte("#version"))) {
			continue
		}
		fieldN := func() string { return fmt.Sprintf("line %d", line) }
		left, right, found := bytes.Cut(l, []byte(" "))
		if !found || bytes.IndexByte(right, ' ') >= 0 {
			return b.errorf(fieldN(), "%q is not a pair", l)
		}
		if err := b.addMerge(left, right, fieldN); err != nil {
			return err
		}
	}
	return nil
}
