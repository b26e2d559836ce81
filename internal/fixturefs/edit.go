package fixturefs

import (
	"encoding/json"
	"os"
	"testing"
)

// EditCase is one image-to-image or inpainting case of
// fixtures/e2e_img2img/e2e_img2img.json or fixtures/e2e_inpaint/e2e_inpaint.json
// (the fields the pipeline tests use). Its reference image is
// fixtures/<Dir>/<Name>.png; InitPNG and MaskPNG ("" for img2img) are in Dir.
type EditCase struct {
	Dir      string  `json:"-"` // "e2e_img2img" or "e2e_inpaint"
	Name     string  `json:"name"`
	Prompt   string  `json:"prompt"`
	InitPNG  string  `json:"init_png"`
	MaskPNG  string  `json:"mask_png"`
	Height   int     `json:"height"`
	Width    int     `json:"width"`
	Seed     int64   `json:"seed"`
	Steps    int     `json:"num_inference_steps"`
	Strength float64 `json:"strength"`
	Guidance float32 `json:"guidance_scale"`
	TStart   int     `json:"t_start"`
}

// EditCases returns every img2img case, then every inpaint case.
func EditCases(tb testing.TB) []EditCase {
	tb.Helper()
	var out []EditCase
	for _, dir := range []string{"e2e_img2img", "e2e_inpaint"} {
		raw, err := os.ReadFile(Path(tb, "fixtures/"+dir+"/"+dir+".json"))
		if err != nil {
			tb.Fatal(err)
		}
		var doc struct{ Cases []EditCase }
		if err := json.Unmarshal(raw, &doc); err != nil {
			tb.Fatalf("testdata: %s.json: %v", dir, err)
		}
		for _, c := range doc.Cases {
			c.Dir = dir
			out = append(out, c)
		}
	}
	return out
}
