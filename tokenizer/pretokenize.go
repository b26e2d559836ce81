package tokenizer

import "unicode/utf8"

// qwenPattern is the pre-tokenizer regex of the Qwen2/Qwen3 tokenizers. Go's
// regexp cannot run it (RE2 has no lookahead), so nextPiece implements it by
// hand; Load only accepts tokenizer files that use exactly this pattern.
const qwenPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// decodeAt returns the rune at s[i], its size and its class. s is valid UTF-8.
func decodeAt(s string, i int) (r rune, size int, class uint8) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, latin1Class[c]
	}
	r, size = utf8.DecodeRuneInString(s[i:])
	return r, size, classOf(r)
}

// nextPiece returns the end of the pre-tokenizer piece that starts at s[i]
// (i < len(s)), i.e. the match of qwenPattern at i. Every position starts a
// match (each alternative's first character class together covers all code
// points), so the pieces tile s exactly as the reference's Split(Isolated)
// does. The alternatives are tried in order, as Oniguruma's leftmost-first
// backtracking does, and each one is resolved in a single forward scan, so
// splitting is linear in len(s).
func nextPiece(s string, i int) int {
	c0, n0, k0 := decodeAt(s, i)
	j := i + n0 // just after the first character

	// 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if c0 == '\'' && j < len(s) {
		if n := contraction(s[j:]); n > 0 {
			return j + n
		}
	}

	// 2. [^\r\n\p{L}\p{N}]?\p{L}+
	if k0 == classLetter {
		return letterRun(s, j)
	}
	if k0 != classNumber && c0 != '\r' && c0 != '\n' && j < len(s) {
		if _, n1, k1 := decodeAt(s, j); k1 == classLetter {
			return letterRun(s, j+n1)
		}
	}

	// 3. \p{N}: digits are single pieces.
	if k0 == classNumber {
		return j
	}

	// 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	start := -1
	if k0 == classOther {
		start = j
	} else if c0 == ' ' && j < len(s) {
		if _, n1, k1 := decodeAt(s, j); k1 == classOther {
			start = j + n1
		}
	}
	if start >= 0 {
		e := start
		for e < len(s) {
			_, n, k := decodeAt(s, e)
			if k != classOther {
				break
			}
			e += n
		}
		for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
			e++
		}
		return e
	}

	// Only white space is left (k0 == classSpace). Scan the maximal white-space
	// run W = s[i:end], remembering where its last newline ends and where its
	// last character starts.
	end, lastNL, lastStart := j, -1, i
	if c0 == '\r' || c0 == '\n' {
		lastNL = j
	}
	for end < len(s) {
		c, n, k := decodeAt(s, end)
		if k != classSpace {
			break
		}
		lastStart = end
		end += n
		if c == '\r' || c == '\n' {
			lastNL = end
		}
	}

	// 5. \s*[\r\n]+: \s* backtracks to the last newline of W.
	if lastNL >= 0 {
		return lastNL
	}
	// 6. \s+(?!\S): all of W at the end of the text, else W minus its last
	// character (which must then not be followed by a non-space).
	if end == len(s) {
		return end
	}
	if lastStart > i {
		return lastStart
	}
	// 7. \s+: a single white-space character before a non-space.
	return end
}

// contraction returns the length of an English contraction suffix ('s 't 're
// 've 'm 'll 'd, any case) at the start of s (the part after the apostrophe),
// or 0.
func contraction(s string) int {
	switch s[0] | 0x20 { // ASCII lower case; non-letters never match below
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) > 1 && s[1]|0x20 == 'e' {
			return 2
		}
	case 'l':
		if len(s) > 1 && s[1]|0x20 == 'l' {
			return 2
		}
	}
	return 0
}

// letterRun returns the end of the run of letters starting at s[i].
func letterRun(s string, i int) int {
	for i < len(s) {
		_, n, k := decodeAt(s, i)
		if k != classLetter {
			break
		}
		i += n
	}
	return i
}
