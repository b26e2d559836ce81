package tokenizer

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/zimage/zimage/internal/fixturefs"
)

func TestVocabSize(t *testing.T) {
	if n := qwen(t).VocabSize(); n != 151669 {
		t.Fatalf("VocabSize = %d, want 151669", n)
	}
}

// TestLoadForms loads the same tokenizer from every accepted path form and
// checks that all encode alike.
func TestLoadForms(t *testing.T) {
	qdir := fixturefs.Path(t, "tokenizer/qwen3")
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	// A directory with only the slow-tokenizer files.
	slow := t.TempDir()
	for _, f := range []string{"vocab.json", "merges.txt", "tokenizer_config.json"} {
		if err := os.Symlink(filepath.Join(qdir, f), filepath.Join(slow, f)); err != nil {
			t.Fatal(err)
		}
	}
	rows := readGolden(t)
	for _, path := range []string{
		model,
		filepath.Join(model, "tokenizer"),
		filepath.Join(model, "tokenizer", "tokenizer.json"),
		qdir,
		slow,
		filepath.Join(slow, "vocab.json"),
	} {
		tok, err := Load(path)
		if err != nil {
			t.Fatalf("Load(%s): %v", path, err)
		}
		if tok.VocabSize() != 151669 {
			t.Errorf("Load(%s): VocabSize %d", path, tok.VocabSize())
		}
		for _, r := range rows {
			got, err := tok.Encode(r.ChatText)
			if err != nil || !slices.Equal(got, r.ChatIDs) {
				t.Fatalf("Load(%s): %s: got %v, %v", path, r.ID, got, err)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	qdir := fixturefs.Path(t, "tokenizer/qwen3")
	full, err := os.ReadFile(filepath.Join(qdir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	js := string(full)
	replace := func(old, new string) string {
		if !strings.Contains(js, old) {
			t.Fatalf("tokenizer.json has no %q", old)
		}
		return strings.Replace(js, old, new, 1)
	}
	for _, c := range []struct {
		name, path string
		format     bool   // want a *FormatError
		want       string // in the message
	}{
		{"missing", filepath.Join(dir, "nope.json"), false, "nope.json"},
		{"empty dir", t.TempDir(), false, "no tokenizer.json"},
		{"truncated", write("trunc/tokenizer.json", js[:len(js)/2]), true, "bad JSON"},
		{"not json", write("garbage/tokenizer.json", "\x00\x01 hello"), true, "bad JSON"},
		{"normalizer", write("nfkc/tokenizer.json", replace(`"type": "NFC"`, `"type": "NFKC"`)), true, "normalizer"},
		{"regex", write("regex/tokenizer.json", replace(`\\p{N}|`, `\\p{N}+|`)), true, "pretokenizers[0]"},
		{"model", write("wp/tokenizer.json", replace(`"type": "BPE"`, `"type": "WordPiece"`)), true, "model.type"},
		{"merge", write("merge/tokenizer.json", replace("\"merges\": [\n      [\n        \"Ġ\",\n        \"Ġ\"", "\"merges\": [\n      [\n        \"Ġ\",\n        \"Ġx☃\"")), true, "merges[0]"},
		{"lstrip", write("lstrip/tokenizer.json", replace(`"lstrip": false`, `"lstrip": true`)), true, "lstrip"},
		{"no config", write("slow/vocab.json", `{"a":0}`), false, "tokenizer_config.json"},
	} {
		if c.name == "no config" {
			write("slow/merges.txt", "#version: 0.2\n")
			c.path = filepath.Dir(c.path)
		}
		_, err := Load(c.path)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		var fe *FormatError
		if errors.As(err, &fe) != c.format {
			t.Errorf("%s: error %T (%v), FormatError wanted: %v", c.name, err, err, c.format)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "tokenizer: ") || !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q does not name %q", c.name, msg, c.want)
		}
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	tok := qwen(t)
	for _, s := range []string{"ab\xffcd", "\xe4\xb8", "ok \xed\xa0\x80 surrogate"} {
		_, err := tok.Encode(s)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Op != "encode" {
			t.Errorf("Encode(%q): %v, want *InputError", s, err)
		}
		if _, _, err := tok.EncodeZImage(s, 0); !errors.As(err, &ie) {
			t.Errorf("EncodeZImage(%q): %v, want *InputError", s, err)
		}
	}
	_, err := tok.Encode("ab\xffcd")
	if ie := err.(*InputError); ie.Offset != 2 {
		t.Errorf("offset %d, want 2", ie.Offset)
	}
}

func TestEncodeZImage(t *testing.T) {
	tok := qwen(t)
	long := strings.Repeat("a cat ", 300) // 600 tokens
	ids, truncated, err := tok.EncodeZImage(long, 0)
	if err != nil || !truncated || len(ids) != MaxSequenceLength {
		t.Fatalf("long prompt: %d ids, truncated %v, %v", len(ids), truncated, err)
	}
	full, _ := tok.Encode(ChatTemplate(long))
	if !slices.Equal(ids, full[:MaxSequenceLength]) {
		t.Fatal("truncation is not a prefix of the full encoding")
	}
	ids, truncated, err = tok.EncodeZImage("Hello", 9)
	if err != nil || truncated || len(ids) != 9 {
		t.Fatalf("exact fit: %v %v %v", ids, truncated, err)
	}
	ids, truncated, err = tok.EncodeZImage("Hello", 4)
	if err != nil || !truncated || !slices.Equal(ids, []int{151644, 872, 198, 9707}) {
		t.Fatalf("maxLen 4: %v %v %v", ids, truncated, err)
	}
	ids, _, err = tok.EncodeZImage("", 0) // the empty (negative) prompt: the 8 template tokens
	if err != nil || len(ids) != 8 {
		t.Fatalf("empty prompt: %v %v", ids, err)
	}
	var ie *InputError
	if _, _, err := tok.EncodeZImage("x", -1); !errors.As(err, &ie) {
		t.Fatalf("negative maxLen: %v", err)
	}
}

// TestDecode checks against decodes made by the Rust reference, including
// ids that split a character (replaced by U+FFFD per maximal invalid
// subsequence, like Rust's String::from_utf8_lossy).
func TestDecode(t *testing.T) {
	tok := qwen(t)
	for _, c := range []struct {
		ids []int
		hex string
	}{
		{[]int{226}, "efbfbd"},
		{[]int{226, 224}, "efbfbdefbfbd"},
		{[]int{11616}, "c2b0"},
		{[]int{149}, "efbfbd"},
		{[]int{149, 96}, "d9a3"},
		{[]int{53645, 26991}, "d09fd180d0b8d0b2"},
		{[]int{151644, 872}, hex.EncodeToString([]byte("<|im_start|>user"))},
		{[]int{145367, 378}, "f09f91a8efbfbd"},
		{[]int{240, 253}, "efbfbdefbfbd"},
		{[]int{255}, "efbfbd"},
		{[]int{254, 254, 254}, "efbfbdefbfbdefbfbd"},
		{[]int{237, 241}, "efbfbdefbfbd"},
		{nil, ""},
	} {
		s, err := tok.Decode(c.ids)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString([]byte(s)); got != c.hex {
			t.Errorf("Decode(%v) = %s, want %s", c.ids, got, c.hex)
		}
	}
	for _, bad := range [][]int{{-1}, {9707, 151669}, {1 << 40}} {
		_, err := tok.Decode(bad)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Op != "decode" {
			t.Errorf("Decode(%v): %v, want *InputError", bad, err)
		}
	}
}

func TestToValidUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                    "abc",
		"\xe2\x82":               "\ufffd",
		"\xe2\x82a":              "\ufffda",
		"\xf0\x80":               "\ufffd\ufffd",
		"\xed\xa0\x80":           "\ufffd\ufffd\ufffd",
		"\xf4\x90\x80\x80":       "\ufffd\ufffd\ufffd\ufffd",
		"\xf0\x9f\x98":           "\ufffd",
		"\xc0\xaf":               "\ufffd\ufffd",
		"a\xffb\xf0\x9f\x98\x80": "a\ufffdb😀",
	} {
		if got := toValidUTF8(in); got != want {
			t.Errorf("toValidUTF8(%+q) = %+q, want %+q", in, got, want)
		}
	}
}

// TestLongRuns checks that huge pieces are neither quadratic nor wrong: a
// quadratic split or merge of 100 KB would take minutes, linear takes
// milliseconds. The bound is loose because the machine may be shared.
func TestLongRuns(t *testing.T) {
	tok := qwen(t)
	for _, s := range []string{
		strings.Repeat("a", 100_000),
		strings.Repeat(" ", 100_000),
		strings.Repeat(" ", 99_999) + "a",
		strings.Repeat("\n", 100_000),
		strings.Repeat(" \n", 50_000),
		strings.Repeat("!", 100_000),
		strings.Repeat("1", 100_000),
		strings.Repeat("中", 30_000),
		strings.Repeat("e\u0301", 30_000),
	} {
		start := time.Now()
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%q×%d: %v", s[:1], len(s), d)
		}
		back, err := tok.Decode(ids)
		if err != nil || back != norm.NFC.String(s) {
			t.Errorf("%q×%d: round trip failed (%v)", s[:1], len(s), err)
		}
	}
}

// TestBPEHeapMatchesArray checks the heap merge (long pieces) against the
// array merge (short pieces) on random byte strings drawn from few letters,
// which have many equal-rank ties.
func TestBPEHeapMatchesArray(t *testing.T) {
	tok := qwen(t)
	r := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{"a", "ab", " e", "the ", " \n", "01", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\x00\xff"}
	for i := 0; i < 3000; i++ {
		alpha := alphabets[r.IntN(len(alphabets))]
		n := 2 + r.IntN(shortPiece-1)
		b := make([]byte, n)
		for j := range b {
			b[j] = alpha[r.IntN(len(alpha))]
		}
		piece := string(b)
		if got, want := tok.bpeHeap(nil, piece), tok.bpe(nil, piece); !slices.Equal(got, want) {
			t.Fatalf("%q: heap %v, array %v", piece, got, want)
		}
	}
}

// TestConcurrentEncode encodes from many goroutines through a shared cache
// (run with -race to check the locking).
func TestConcurrentEncode(t *testing.T) {
	tok := qwen(t)
	rows := readGolden(t)
	tok.cache.reset()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rows {
				r := rows[(i+g*91)%len(rows)]
				if ids, err := tok.Encode(r.Text); err != nil || !slices.Equal(ids, r.IDs) {
					t.Errorf("%s: %v %v", r.ID, ids, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestCacheBounded feeds many distinct pieces and checks the cache stays
// within its limits.
func TestCacheBounded(t *testing.T) {
	tok := qwen(t)
	var sb strings.Builder
	for i := 0; i < 3*cacheMaxEntries; i++ {
		sb.WriteString(" w")
		for v := i; v > 0; v /= 26 {
			sb.WriteByte(byte('a' + v%26))
		}
	}
	if _, err := tok.Encode(sb.String()); err != nil {
		t.Fatal(err)
	}
	tok.cache.mu.Lock()
	n, b := len(tok.cache.m), tok.cache.bytes
	tok.cache.mu.Unlock()
	if n > cacheMaxEntries || b > cacheMaxBytes {
		t.Fatalf("cache holds %d entries, %d bytes", n, b)
	}
}

func FuzzEncode(f *testing.F) {
	for _, r := range readGolden(f) {
		f.Add([]byte(r.Text))
	}
	for _, s := range []string{"", "\xff", "<|im_start|>\u0338", "'S'LL", " \t\n\r\u00a0\u3000x", "\U00011935\U00011930a\u0D3B\u0323"} {
		f.Add([]byte(s))
	}
	tok := qwen(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := string(data)
		ids, err := tok.Encode(s)
		if !utf8.ValidString(s) {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("invalid UTF-8 %q: %v, want *InputError", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("%q: id %d out of range", s, id)
			}
		}
		back, err := tok.Decode(ids)
		if err != nil {
			t.Fatalf("%q: decode: %v", s, err)
		}
		// Equal up to normalization (segments between added tokens are
		// normalized separately, so compare the NFC of both).
		if norm.NFC.String(back) != norm.NFC.String(s) {
			t.Fatalf("%+q: decodes to %+q", s, back)
		}
	})
}
