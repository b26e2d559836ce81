// Package travel lists the testdata files the gpu-tagged tests of
// cuda/gpucheck read, so that scripts/gpu-travel.sh can leave the rest
// behind: the working tree copied to a lent GPU machine is capped at 64 MiB
// and the whole of testdata/ no longer fits beside the test binary.
package travel

import (
	"path"
	"strings"
)

// Patterns are the testdata paths (relative to testdata/, slash-separated)
// the GPU tests read through internal/fixturefs: an entry ending in "/" is a
// whole directory, any other is a path.Match pattern. The reference PNGs and
// case JSONs travel; the intermediate tensors of the e2e_* fixtures (CPU
// tests only) and the second ControlNet under e2e_controlnet/modes/ do not.
// TestPatternsCoverGPUTests keeps this list in step with the tests.
var Patterns = []string{
	"README.md",
	"fixtures/tiny-z-image-turbo/",
	"fixtures/e2e/e2e.json",
	"fixtures/e2e/*.png",
	"fixtures/e2e_img2img/e2e_img2img.json",
	"fixtures/e2e_img2img/*.png",
	"fixtures/e2e_inpaint/e2e_inpaint.json",
	"fixtures/e2e_inpaint/*.png",
	"fixtures/e2e_lora/e2e_lora.json",
	"fixtures/e2e_lora/*.png",
	"fixtures/e2e_lora/lora_*.safetensors",
	"fixtures/e2e_controlnet/e2e_controlnet.json",
	"fixtures/e2e_controlnet/*.png",
	"fixtures/e2e_controlnet/controlnet/",
}

// Needed reports whether the GPU tests read the testdata file rel
// (relative to testdata/, slash-separated). A fixture stored as NAME.zst is
// needed when NAME or NAME.zst matches.
func Needed(rel string) bool {
	for _, p := range Patterns {
		if strings.HasSuffix(p, "/") {
			if strings.HasPrefix(rel, p) {
				return true
			}
			continue
		}
		for _, r := range []string{rel, strings.TrimSuffix(rel, ".zst")} {
			if ok, _ := path.Match(p, r); ok {
				return true
			}
		}
	}
	return false
}
