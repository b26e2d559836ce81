package fixturefs

import (
	"encoding/json"
	"os"
	"testing"
)

// LoRACase is one case of fixtures/e2e_lora/e2e_lora.json: an e2e run with
// LoRA files applied at scales; its tensors are in
// fixtures/e2e_lora/<Name>.safetensors and its image in <Name>.png.
type LoRACase struct {
	E2ECase
	LoRAs []struct {
		File    string  `json:"file"`
		Adapter string  `json:"adapter_name"`
		Scale   float32 `json:"scale"`
	} `json:"loras"`
}

// LoRACases returns every case of fixtures/e2e_lora/e2e_lora.json.
func LoRACases(tb testing.TB) []LoRACase {
	tb.Helper()
	raw, err := os.ReadFile(Path(tb, "fixtures/e2e_lora/e2e_lora.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Cases []LoRACase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("testdata: e2e_lora.json: %v", err)
	}
	return doc.Cases
}
