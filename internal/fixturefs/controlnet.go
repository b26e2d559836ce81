package fixturefs

import (
	"encoding/json"
	"os"
	"testing"
)

// ControlCase is one ControlNet case of
// fixtures/e2e_controlnet/e2e_controlnet.json (the fields the pipeline
// tests use). Its reference image is fixtures/e2e_controlnet/<Name>.png;
// ControlPNG, InitPNG and MaskPNG ("" unless ControlNet inpainting) are in
// that folder, and the ControlNet is its controlnet/ directory.
type ControlCase struct {
	Name       string  `json:"name"`
	Pipeline   string  `json:"pipeline"`
	Prompt     string  `json:"prompt"`
	Height     int     `json:"height"`
	Width      int     `json:"width"`
	Seed       int64   `json:"seed"`
	Steps      int     `json:"num_inference_steps"`
	Guidance   float32 `json:"guidance_scale"`
	Scale      float32 `json:"controlnet_conditioning_scale"`
	ControlPNG string  `json:"control_png"`
	InitPNG    string  `json:"init_png"`
	MaskPNG    string  `json:"mask_png"`
	Resized    bool    `json:"control_resized"` // the control PNG's size differs from the output's
}

// ControlCases returns every case of e2e_controlnet.json.
func ControlCases(tb testing.TB) []ControlCase {
	tb.Helper()
	raw, err := os.ReadFile(Path(tb, "fixtures/e2e_controlnet/e2e_controlnet.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct{ Cases []ControlCase }
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("testdata: e2e_controlnet.json: %v", err)
	}
	return doc.Cases
}
