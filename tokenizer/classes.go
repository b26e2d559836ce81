package tokenizer

//go:generate go run ./internal/gen -in ../testdata/tokenizer/pretokenizer_classes.json -out classes_table.go

// Character classes of the pre-tokenizer regex. They are disjoint: a letter is
// never also a number, and neither is ever white space.
const (
	classOther  uint8 = iota // none of the below
	classLetter              // \p{L}
	classNumber              // \p{N}
	classSpace               // \s
)

// classRange is an inclusive code point range of one class.
type classRange struct {
	lo, hi rune
	class  uint8
}

// latin1Class holds the class of U+0000..U+00FF, the common case, so that most
// lookups never reach the binary search.
var latin1Class = func() (t [256]uint8) {
	for _, r := range classRanges {
		for c := r.lo; c <= r.hi && c < 256; c++ {
			t[c] = r.class
		}
	}
	return t
}()

// classOf returns the class of r as the reference regex engine sees it. It
// deliberately does not use package unicode: Go's tables are an older Unicode
// version than the reference's.
func classOf(r rune) uint8 {
	if r < 256 {
		return latin1Class[r]
	}
	lo, hi := 0, len(classRanges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch cr := &classRanges[m]; {
		case r < cr.lo:
			hi = m
		case r > cr.hi:
			lo = m + 1
		default:
			return cr.class
		}
	}
	return classOther
}
