package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// TestAdversarial checks ids against the Rust reference on short random
// strings built from regex-, NFC- and added-token-stressing atoms
// (testdata/adversarial.jsonl, made by bench/tokenizer/make_adversarial.js).
func TestAdversarial(t *testing.T) {
	tok := qwen(t)
	f, err := os.Open("testdata/adversarial.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, fails := 0, 0
	for sc.Scan() {
		var row struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		n++
		got, err := tok.Encode(row.Text)
		if err != nil {
			t.Fatalf("%q: %v", row.Text, err)
		}
		if !slices.Equal(got, row.IDs) {
			fails++
			t.Errorf("%q:\n got %v\nwant %v", row.Text, got, row.IDs)
			if fails > 20 {
				t.Fatal("too many failures")
			}
		}
		back, err := tok.Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if norm.NFC.String(back) != norm.NFC.String(row.Text) {
			t.Errorf("%q: decode gives %q", row.Text, back)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 1000 {
		t.Fatalf("only %d rows", n)
	}
}

// TestNFCReference checks nfc against the reference's normalization on every
// probe where Go's own tables give a different result
// (testdata/nfc_cases.jsonl, made by bench/tokenizer/nfc_probe.sh).
func TestNFCReference(t *testing.T) {
	data, err := os.ReadFile("testdata/nfc_cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var c struct{ Text, NFC string }
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		n++
		if got := nfc(c.Text); got != c.NFC {
			t.Errorf("nfc(%+q) = %+q, want %+q", c.Text, got, c.NFC)
		}
		if norm.NFC.String(c.Text) == c.NFC {
			t.Errorf("%+q: not a case where Go's tables differ", c.Text)
		}
	}
	if n < 100 {
		t.Fatalf("only %d cases", n)
	}
	// Normal text is untouched, and mixed text is split around the unknown mark.
	for in, want := range map[string]string{
		"":                          "",
		"e\u0301":                   "é",
		"e\u0301\U00011930e\u0301":  "é\U00011930é",
		"\U00011935\U00011930":      "\U00011935\U00011930",
		"a\u0D3B\u0323 e\u0301":     "a\u0D3B\u0323 é",
		"plain ascii, unchanged 42": "plain ascii, unchanged 42",
	} {
		if got := nfc(in); got != want {
			t.Errorf("nfc(%+q) = %+q, want %+q", in, got, want)
		}
	}
}

func TestNFCTableVersion(t *testing.T) {
	if norm.Version != nfcTableVersion {
		t.Fatalf("golang.org/x/text norm tables are Unicode %s but nfc_table.go was probed against %s: rerun bench/tokenizer/nfc_probe.sh", norm.Version, nfcTableVersion)
	}
}
