// Package tokenizer is the Qwen2/Qwen3 byte-level BPE tokenizer that Z-Image
// uses for its Qwen3 text encoder. It reproduces the Hugging Face tokenizers
// reference exactly: added tokens, NFC, the pre-tokenizer regex, byte-level
// mapping and rank-ordered BPE, plus the Z-Image chat template and truncation.
package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxSequenceLength is the number of tokens Z-Image feeds the text
	// encoder, chat template included.
	MaxSequenceLength = 512
	// PadID is <|endoftext|>, the id Z-Image pads the text encoder input with.
	PadID = 151643
)

// ChatTemplate returns the Qwen3 chat template for one user message with a
// generation prompt and thinking enabled, as Z-Image renders it. (With
// enable_thinking=True the template emits no <think> block.)
func ChatTemplate(prompt string) string {
	return "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n"
}

// InputError reports input the tokenizer cannot process: text that is not
// valid UTF-8, a token id outside the vocabulary, or a bad length limit.
type InputError struct {
	Op     string // "encode" or "decode"
	Offset int    // byte offset into the text (encode) or index into the ids (decode); -1: none
	Reason string
}

func (e *InputError) Error() string {
	switch {
	case e.Offset < 0:
		return fmt.Sprintf("tokenizer: %s: %s", e.Op, e.Reason)
	case e.Op == "decode":
		return fmt.Sprintf("tokenizer: decode: ids[%d]: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("tokenizer: encode: byte %d: %s", e.Offset, e.Reason)
}

// addedToken is a token matched on the text before normalization and BPE
// (the special tokens such as <|im_start|>).
type addedToken struct {
	content string
	id      int32
}

// addedSet finds added tokens in text: leftmost match first, the longest one
// among matches at the same position (the reference's LeftmostLongest).
type addedSet struct {
	byFirst [256][]addedToken // candidates by first byte, longest first
	first   [256]bool
	only    int // the single first byte shared by all tokens, or -1
}

func newAddedSet(toks []addedToken) *addedSet {
	s := &addedSet{only: -1}
	if len(toks) == 0 {
		return s
	}
	for _, t := range toks {
		b := t.content[0]
		s.first[b] = true
		list := append(s.byFirst[b], t)
		// Keep longest first: insertion sort, the lists are tiny.
		for i := len(list) - 1; i > 0 && len(list[i].content) > len(list[i-1].content); i-- {
			list[i], list[i-1] = list[i-1], list[i]
		}
		s.byFirst[b] = list
	}
	n := 0
	for b := range s.first {
		if s.first[b] {
			n++
			s.only = b
		}
	}
	if n != 1 {
		s.only = -1
	}
	return s
}

// find returns the position and token of the first added token in text at or
// after byte i, or pos = -1.
func (s *addedSet) find(text string, i int) (pos int, tok addedToken) {
	for i < len(text) {
		if s.only >= 0 {
			k := strings.IndexByte(text[i:], byte(s.only))
			if k < 0 {
				return -1, tok
			}
			i += k
		} else if !s.first[text[i]] {
			i++
			continue
		}
		for _, t := range s.byFirst[text[i]] {
			if strings.HasPrefix(text[i:], t.content) {
				return i, t
			}
		}
		i++
	}
	return -1, tok
}

// Tokenizer encodes text to Qwen3 token ids and back. It is safe for
// concurrent use.
type Tokenizer struct {
	byteID  [256]int32  // id of each single-byte token
	merges  *mergeTable // pairKey(left, right) → rank<<32 | merged id
	tokens  []string    // id → raw bytes (vocab) or content (added); "" = no such id
	raw     *addedSet   // added tokens matched on the raw text
	normd   *addedSet   // added tokens matched after NFC ("normalized": true)
	hasNorm bool        // normd is non-empty
	cache   pieceCache
}

// VocabSize returns one more than the largest token id: the base vocabulary
// plus the added tokens (151,669 for Qwen3; the text encoder's embedding
// table has more rows, which are never produced).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Encode returns the token ids of text, like tokenizer(text).input_ids of the
// Hugging Face reference (no BOS or EOS is added). Added tokens written in the
// text, such as "<|im_start|>", are encoded as those tokens. Text that is not
// valid UTF-8 gives an *InputError.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	ids32, err := t.encode(text)
	if err != nil {
		return nil, err
	}
	ids := make([]int, len(ids32))
	for i, id := range ids32 {
		ids[i] = int(id)
	}
	return ids, nil
}

// EncodeZImage returns the ids Z-Image feeds its text encoder for prompt: the
// ids of ChatTemplate(prompt), truncated on the right to maxLen tokens (0
// means MaxSequenceLength) as the reference pipeline does, so a long prompt
// loses the end of the template. Only real tokens are returned (no padding);
// len(ids) is the caption length the DiT gets. truncated reports whether any
// tokens were cut.
func (t *Tokenizer) EncodeZImage(prompt string, maxLen int) (ids []int, truncated bool, err error) {
	if maxLen < 0 {
		return nil, false, &InputError{Op: "encode", Offset: -1, Reason: fmt.Sprintf("negative length limit %d", maxLen)}
	}
	if maxLen == 0 {
		maxLen = MaxSequenceLength
	}
	if !utf8.ValidString(prompt) {
		return nil, false, invalidUTF8(prompt)
	}
	ids, err = t.Encode(ChatTemplate(prompt))
	if err != nil {
		return nil, false, err
	}
	if len(ids) > maxLen {
		return ids[:maxLen:maxLen], true, nil
	}
	return ids, false, nil
}

// invalidUTF8 returns the error for text that is not valid UTF-8.
func invalidUTF8(text string) error {
	off := 0
	for off < len(text) {
		r, n := utf8.DecodeRuneInString(text[off:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		off += n
	}
	return &InputError{Op: "encode", Offset: off, Reason: fmt.Sprintf("invalid UTF-8 (byte 0x%02x)", text[off])}
}

// encode is Encode with int32 ids.
func (t *Tokenizer) encode(text string) ([]int32, error) {
	if !utf8.ValidString(text) {
		return nil, invalidUTF8(text)
	}
	// Roughly 4 bytes per token for English, 1.5 for CJK.
	ids := make([]int32, 0, len(text)/3+8)
	i := 0
	for i < len(text) {
		pos, tok := t.raw.find(text, i)
		if pos < 0 {
			break
		}
		ids = t.encodeSegment(ids, text[i:pos])
		ids = append(ids, tok.id)
		i = pos + len(tok.content)
	}
	return t.encodeSegment(ids, text[i:]), nil
}

// encodeSegment appends the ids of a stretch of text that holds no raw-matched
// added token: NFC, normalized added tokens, pre-tokenizer, BPE.
func (t *Tokenizer) encodeSegment(ids []int32, seg string) []int32 {
	if seg == "" {
		return ids
	}
	seg = nfc(seg)
	if !t.hasNorm {
		return t.encodePieces(ids, seg)
	}
	i := 0
	for i < len(seg) {
		pos, tok := t.normd.find(seg, i)
		if pos < 0 {
			break
		}
		ids = t.encodePieces(ids, seg[i:pos])
		ids = append(ids, tok.id)
		i = pos + len(tok.content)
	}
	return t.encodePieces(ids, seg[i:])
}

// encodePieces pre-tokenizes normalized text and appends the BPE ids of each
// piece.
func (t *Tokenizer) encodePieces(ids []int32, s string) []int32 {
	for i := 0; i < len(s); {
		e := nextPiece(s, i)
		ids = t.encodePiece(ids, s[i:e])
		i = e
	}
	return ids
}

// encodePiece appends the ids of one pre-tokenizer piece, through the cache.
func (t *Tokenizer) encodePiece(ids []int32, piece string) []int32 {
	if len(piece) == 1 {
		return append(ids, t.byteID[piece[0]])
	}
	if len(piece) >= cacheMaxPiece {
		return t.bpe(ids, piece)
	}
	if v, ok := t.cache.get(piece); ok {
		return append(ids, v...)
	}
	n := len(ids)
	ids = t.bpe(ids, piece)
	v := make([]int32, len(ids)-n)
	copy(v, ids[n:])
	t.cache.put(strings.Clone(piece), v)
	return ids
}

// Decode returns the text of ids: the bytes of the byte-level tokens and the
// text of the added tokens, with invalid UTF-8 (possible when ids split a
// character) replaced by U+FFFD as the reference does. An id outside the
// vocabulary gives an *InputError.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	n := 0
	for i, id := range ids {
		if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
			return "", &InputError{Op: "decode", Offset: i, Reason: fmt.Sprintf("unknown token id %d", id)}
		}
		n += len(t.tokens[id])
	}
	var b strings.Builder
	b.Grow(n)
	for _, id := range ids {
		b.WriteString(t.tokens[id])
	}
	return toValidUTF8(b.String()), nil
}

// toValidUTF8 replaces each maximal invalid subsequence of s with one U+FFFD,
// the rule of Rust's String::from_utf8_lossy (and of the WHATWG encoding
// standard), which the reference decoder uses. Go's strings.ToValidUTF8
// differs: it replaces a whole run of invalid bytes with a single U+FFFD.
func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || n != 1 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
	}
	return b.String()
}

// maximalSubpart returns the length (≥ 1) of the longest prefix of s that is a
// prefix of some valid UTF-8 encoding; s starts with an invalid sequence.
func maximalSubpart(s string) int {
	c := s[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF) // allowed range of the second byte
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	i := 1
	for ; i <= need && i < len(s); i++ {
		b := s[i]
		if i == 1 {
			if b < lo || b > hi {
				break
			}
		} else if b < 0x80 || b > 0xBF {
			break
		}
	}
	return i
}
