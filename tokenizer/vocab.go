package tokenizer

import (
	"fmt"
	"strings"
)

// VocabMismatchError reports a vocabulary (e.g. the one embedded in a GGUF
// checkpoint) that does not agree with the tokenizer.
type VocabMismatchError struct {
	ID         int    // first differing id
	Want, Got  string // the tokenizer's token and the other vocabulary's
	Mismatches int    // how many ids differ
}

func (e *VocabMismatchError) Error() string {
	return fmt.Sprintf("tokenizer: vocabulary differs at %d ids, first id %d: %q here, %q there", e.Mismatches, e.ID, e.Want, e.Got)
}

// CompareVocab checks a vocabulary given as id → token string, byte-level
// tokens in the GPT-2 alphabet ("Ġhello") and added tokens as their text
// (the form of vocab.json and of GGUF's tokenizer.ggml.tokens), against
// the tokenizer's ids below VocabSize. Ids the tokenizer does not have and
// entries past its vocabulary (GGUF pads to the embedding size) are not
// compared. It returns a *VocabMismatchError, or nil when they agree.
func (t *Tokenizer) CompareVocab(vocab []string) error {
	var e *VocabMismatchError
	for id := range min(len(vocab), len(t.tokens)) {
		want, got := t.tokens[id], vocab[id]
		if want == "" || got == want || byteLevelDecode(got) == want {
			continue
		}
		if e == nil {
			e = &VocabMismatchError{ID: id, Want: want, Got: got}
		}
		e.Mismatches++
	}
	if len(vocab) < len(t.tokens) {
		if e == nil {
			e = &VocabMismatchError{ID: len(vocab), Want: t.tokens[len(vocab)], Got: ""}
		}
		e.Mismatches += len(t.tokens) - len(vocab)
	}
	if e != nil {
		return e
	}
	return nil
}

// byteLevelDecode maps a GPT-2 alphabet string to its bytes ("" when a
// rune is outside the alphabet).
func byteLevelDecode(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 0 || int(r) >= len(runeToByte) || runeToByte[r] < 0 {
			return ""
		}
		b = append(b, byte(runeToByte[r]))
	}
	return string(b)
}

// GGUF token types (llama.cpp's llama_token_type).
const (
	ggufNormal      = 1
	ggufControl     = 3
	ggufUserDefined = 4
)

// FromVocab builds a tokenizer from the vocabulary of a GGUF checkpoint
// (tokenizer.ggml.tokens, token_type and merges, as llama.cpp's converter
// writes them for Qwen2/Qwen3): normal tokens are byte-level BPE tokens,
// control and user-defined tokens are added tokens (control ones special),
// other types (unused padding, unknown) are left out. file names the
// source in errors.
func FromVocab(file string, tokens []string, types []int64, merges []string) (*Tokenizer, error) {
	b := &builder{file: file}
	if len(types) != len(tokens) {
		return nil, b.errorf("token_type", "%d types for %d tokens", len(types), len(tokens))
	}
	var added []addedJSON
	for id, tok := range tokens {
		switch types[id] {
		case ggufNormal:
			off := len(b.arena)
			var ok bool
			if b.arena, ok = appendUnByteLevel(b.arena, []byte(tok)); !ok || tok == "" {
				return nil, b.errorf("tokens", "token %q (id %d) is not in the byte-level alphabet", tok, id)
			}
			b.ents = append(b.ents, vocabEnt{int32(off), int32(len(b.arena) - off), int32(id)})
		case ggufControl, ggufUserDefined:
			id := id
			added = append(added, addedJSON{ID: &id, Content: tok, Special: types[id] == ggufControl})
		}
	}
	if len(b.ents) == 0 {
		return nil, b.errorf("tokens", "empty vocabulary")
	}
	if err := b.finishVocab(added); err != nil {
		return nil, err
	}
	for i, m := range merges {
		left, right, found := strings.Cut(m, " ")
		field := func() string { return fmt.Sprintf("merges[%d]", i) }
		if !found || strings.Contains(right, " ") {
			return nil, b.errorf(field(), "%q is not a pair", m)
		}
		if err := b.addMerge([]byte(left), []byte(right), field); err != nil {
			return nil, err
		}
	}
	return b.t, nil
}

// MergesMismatchError reports two tokenizers with different BPE merges.
type MergesMismatchError struct {
	Here, There int // merge counts
	Differ      int // merges of this tokenizer missing or ranked differently there
}

func (e *MergesMismatchError) Error() string {
	return fmt.Sprintf("tokenizer: merges differ: %d here, %d there, %d missing or ranked differently", e.Here, e.There, e.Differ)
}

// CompareMerges checks that o has the same merges, with the same ranks and
// results, as t (compare the vocabularies first: merges are keyed by ids).
func (t *Tokenizer) CompareMerges(o *Tokenizer) error {
	differ := 0
	for _, s := range t.merges.slots {
		if s.key == emptyKey {
			continue
		}
		if v, ok := o.merges.get(s.key); !ok || v != s.val {
			differ++
		}
	}
	if differ > 0 || t.merges.n != o.merges.n {
		return &MergesMismatchError{Here: t.merges.n, There: o.merges.n, Differ: differ}
	}
	return nil
}
