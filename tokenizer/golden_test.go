package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/zimage/zimage/internal/fixturefs"
)

// goldenRow is one line of golden_public.jsonl (ids from the Rust reference).
type goldenRow struct {
	ID        string `json:"id"`
	Category  string `json:"category"`
	Text      string `json:"text"`
	IDs       []int  `json:"ids"`
	ChatText  string `json:"chat_text"`
	ChatIDs   []int  `json:"chat_ids"`
	ZImageLen int    `json:"zimage_len"`
}

func readGolden(tb testing.TB) []goldenRow {
	tb.Helper()
	f, err := os.Open(fixturefs.Path(tb, "tokenizer/golden_public.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var rows []goldenRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r goldenRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			tb.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return rows
}

var (
	qwenOnce sync.Once
	qwenTok  *Tokenizer
	qwenErr  error
)

// qwen returns the Qwen3 tokenizer from tokenizer.json, loaded once per test
// binary.
func qwen(tb testing.TB) *Tokenizer {
	tb.Helper()
	dir := fixturefs.Path(tb, "tokenizer/qwen3")
	qwenOnce.Do(func() { qwenTok, qwenErr = Load(dir + "/tokenizer.json") })
	if qwenErr != nil {
		tb.Fatal(qwenErr)
	}
	return qwenTok
}

func TestGolden(t *testing.T) {
	tok := qwen(t)
	rows := readGolden(t)
	if len(rows) != 361 {
		t.Fatalf("golden rows: got %d, want 361", len(rows))
	}
	fails := 0
	for _, r := range rows {
		check := func(what string, got, want []int) {
			if !slices.Equal(got, want) {
				fails++
				t.Errorf("%s (%s) %s %q:\n got %v\nwant %v", r.ID, r.Category, what, r.Text, got, want)
			}
		}
		ids, err := tok.Encode(r.Text)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		check("ids", ids, r.IDs)
		if got := ChatTemplate(r.Text); got != r.ChatText {
			t.Errorf("%s: ChatTemplate = %q, want %q", r.ID, got, r.ChatText)
		}
		chat, err := tok.Encode(r.ChatText)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		check("chat_ids", chat, r.ChatIDs)
		z, truncated, err := tok.EncodeZImage(r.Text, 0)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		check("EncodeZImage", z, r.ChatIDs[:r.ZImageLen])
		if truncated != (len(r.ChatIDs) > MaxSequenceLength) {
			t.Errorf("%s: truncated = %v with %d chat tokens", r.ID, truncated, len(r.ChatIDs))
		}
		back, err := tok.Decode(ids)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		if want := norm.NFC.String(r.Text); back != want {
			t.Errorf("%s: Decode(Encode(text)) = %q, want NFC(text) %q", r.ID, back, want)
		}
		if fails > 20 {
			t.Fatal("too many failures")
		}
	}
}

func TestHelloChat(t *testing.T) {
	ids, truncated, err := qwen(t).EncodeZImage("Hello", 0)
	if err != nil || truncated {
		t.Fatalf("EncodeZImage: %v, truncated %v", err, truncated)
	}
	want := []int{151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198}
	if !slices.Equal(ids, want) {
		t.Fatalf("got %v, want %v", ids, want)
	}
}
