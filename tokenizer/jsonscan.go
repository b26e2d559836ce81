package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jscan is a minimal JSON reader for the two big tables of a tokenizer file
// (the vocabulary and the merges), which encoding/json reads several times
// slower. Everything else in the files goes through encoding/json.
type jscan struct {
	data []byte
	pos  int
}

var errJSON = errors.New("bad JSON")

func (s *jscan) fail(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errJSON, s.pos, fmt.Sprintf(format, args...))
}

func (s *jscan) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it (0 at the end).
func (s *jscan) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *jscan) expect(c byte) error {
	if s.peek() != c {
		return s.fail("want %q", c)
	}
	s.pos++
	return nil
}

// more reports whether a list (array or object) has another element, after
// consuming the separating comma or the closing bracket. first is true before
// the first element.
func (s *jscan) more(first bool, close byte) (bool, error) {
	c := s.peek()
	if c == close {
		s.pos++
		return false, nil
	}
	if !first {
		if c != ',' {
			return false, s.fail("want ',' or %q", close)
		}
		s.pos++
	}
	return true, nil
}

// str reads a string and appends its decoded bytes to buf.
func (s *jscan) str(buf []byte) ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return buf, err
	}
	for {
		i := bytes.IndexAny(s.data[s.pos:], "\"\\")
		if i < 0 {
			return buf, s.fail("unterminated string")
		}
		chunk := s.data[s.pos : s.pos+i]
		for _, c := range chunk {
			if c < 0x20 {
				return buf, s.fail("control character in string")
			}
		}
		buf = append(buf, chunk...)
		s.pos += i
		if s.data[s.pos] == '"' {
			s.pos++
			if !utf8.Valid(buf) {
				return buf, s.fail("string is not valid UTF-8")
			}
			return buf, nil
		}
		// An escape.
		if s.pos+1 >= len(s.data) {
			return buf, s.fail("unterminated escape")
		}
		e := s.data[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return buf, s.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(utf8.RuneError)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					if lo, ok := s.hex4(); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
						r2 = utf16.DecodeRune(r, lo)
					} else {
						s.pos = save
					}
				}
				r = r2 // a lone surrogate becomes U+FFFD, as in encoding/json
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return buf, s.fail("bad escape \\%c", e)
		}
	}
}

func (s *jscan) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.pos += 4
	return rune(v), true
}

// int reads a non-negative integer that fits in an int32.
func (s *jscan) int() (int, error) {
	s.ws()
	start, v := s.pos, 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		v = v*10 + int(s.data[s.pos]-'0')
		if v > 1<<31-1 {
			return 0, s.fail("number too large")
		}
		s.pos++
	}
	if s.pos == start {
		return 0, s.fail("want a non-negative integer")
	}
	if s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '.', 'e', 'E':
			return 0, s.fail("want an integer")
		}
	}
	return v, nil
}

// skip reads over any value and returns its bytes.
func (s *jscan) skip() ([]byte, error) {
	c := s.peek()
	start := s.pos
	switch {
	case c == '"':
		if err := s.skipString(); err != nil {
			return nil, err
		}
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		s.pos++
		for first := true; ; first = false {
			ok, err := s.more(first, close)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			if c == '{' {
				if err := s.skipString(); err != nil {
					return nil, err
				}
				if err := s.expect(':'); err != nil {
					return nil, err
				}
			}
			if _, err := s.skip(); err != nil {
				return nil, err
			}
		}
	case c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n':
	literal:
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				break literal
			}
			s.pos++
		}
	default:
		return nil, s.fail("want a value")
	}
	return s.data[start:s.pos], nil
}

// skipString reads over a string without decoding it (the bytes are checked
// when they are parsed, or by encoding/json).
func (s *jscan) skipString() error {
	if err := s.expect('"'); err != nil {
		return err
	}
	for {
		i := bytes.IndexAny(s.data[s.pos:], "\"\\")
		if i < 0 {
			return s.fail("unterminated string")
		}
		s.pos += i + 1
		if s.data[s.pos-1] == '"' {
			return nil
		}
		s.pos++ // the escaped byte
	}
}

// object reads an object, calling f for each key with the scanner positioned
// at its value; f must consume the value. key is only valid during the call.
func (s *jscan) object(f func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	var key []byte
	for first := true; ; first = false {
		ok, err := s.more(first, '}')
		if err != nil || !ok {
			return err
		}
		if key, err = s.str(key[:0]); err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := f(key); err != nil {
			return err
		}
	}
}
