package fixturefs

import (
	"encoding/json"
	"os"
	"testing"
)

// E2ECase is one end-to-end case of fixtures/e2e/e2e.json (the fields the
// pipeline tests use); its reference image is fixtures/e2e/<Name>.png.
type E2ECase struct {
	Name     string  `json:"name"`
	Prompt   string  `json:"prompt"`
	Height   int     `json:"height"`
	Width    int     `json:"width"`
	Seed     int64   `json:"seed"`
	Steps    int     `json:"num_inference_steps"`
	Guidance float32 `json:"guidance_scale"`
}

// E2ECases returns every case of fixtures/e2e/e2e.json.
func E2ECases(tb testing.TB) []E2ECase {
	tb.Helper()
	raw, err := os.ReadFile(Path(tb, "fixtures/e2e/e2e.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Cases []E2ECase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("testdata: e2e.json: %v", err)
	}
	return doc.Cases
}
