package tokenizer

// The byte-level alphabet of GPT-2 (bytes_to_unicode): every byte value is
// shown as a printable code point so that vocabulary and merges files are text.
// Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other
// 68 bytes map, in byte order, to U+0100 onwards. Token strings in the files
// are in this alphabet; internally the tokenizer works on raw bytes.
var (
	byteToRune [256]rune
	runeToByte [0x100 + 68]int16 // -1: not in the alphabet
)

func init() {
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	next := rune(0x100)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = next
			next++
		}
		runeToByte[byteToRune[b]] = int16(b)
	}
}
