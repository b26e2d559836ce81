package tokenizer

import "fmt"

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
