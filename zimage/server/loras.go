package server

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
)

// MaxLoRAs is the most LoRA adapters one request may select.
const MaxLoRAs = 4

// LoRA is an adapter a request selects: a name the operator registered
// (Config.LoRAs; clients never name files) and its strength.
type LoRA struct {
	Name  string  `json:"name"`
	Scale float32 `json:"scale"`
}

// loraNames lists the registered adapters, sorted.
func (s *Server) loraNames() []string {
	names := make([]string, 0, len(s.cfg.LoRAs))
	for n := range s.cfg.LoRAs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// decodeLoRAs reads the optional "loras" field of a generation body:
// [{"name": "…", "scale": 0.8}, …], at most MaxLoRAs, names registered,
// scale optional (default: the operator's scale for that name).
func (s *Server) decodeLoRAs(body []byte) ([]LoRA, *apiError) {
	var raw struct {
		LoRAs json.RawMessage `json:"loras"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.LoRAs) == 0 || string(raw.LoRAs) == "null" {
		return nil, nil // the body was validated already; no field
	}
	var items []struct {
		Name  *string  `json:"name"`
		Scale *float64 `json:"scale"`
	}
	if err := json.Unmarshal(raw.LoRAs, &items); err != nil {
		return nil, errorf(http.StatusBadRequest, `field "loras" must be an array of {"name": string, "scale": number}`)
	}
	if len(items) > MaxLoRAs {
		return nil, errorf(http.StatusBadRequest, `field "loras" has %d entries; the limit is %d`, len(items), MaxLoRAs)
	}
	out := make([]LoRA, 0, len(items))
	for i, it := range items {
		if it.Name == nil || *it.Name == "" {
			return nil, errorf(http.StatusBadRequest, `field "loras"[%d] needs a "name"`, i)
		}
		def, ok := s.cfg.LoRAs[*it.Name]
		if !ok {
			avail := "none are loaded"
			if names := s.loraNames(); len(names) > 0 {
				avail = "available: " + strings.Join(names, ", ")
			}
			return nil, errorf(http.StatusBadRequest, "unknown LoRA %q (%s)", *it.Name, avail)
		}
		scale := def
		if it.Scale != nil {
			if math.IsNaN(*it.Scale) || math.Abs(*it.Scale) > 100 {
				return nil, errorf(http.StatusBadRequest, `field "loras"[%d].scale must be a number in [-100, 100]`, i)
			}
			scale = float32(*it.Scale)
		}
		out = append(out, LoRA{Name: *it.Name, Scale: scale})
	}
	return out, nil
}

// loraColumn is a task's adapters as stored (JSON; "" for none).
func loraColumn(ls []LoRA) string {
	if len(ls) == 0 {
		return ""
	}
	b, _ := json.Marshal(ls)
	return string(b)
}

// parseLoRAColumn reads loraColumn's format back.
func parseLoRAColumn(s string) []LoRA {
	if s == "" {
		return nil
	}
	var ls []LoRA
	_ = json.Unmarshal([]byte(s), &ls)
	return ls
}

// handleLoRAs is GET /api/loras: the adapters requests may select.
func (s *Server) handleLoRAs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, methodNotAllowed("GET"))
		return
	}
	type item struct {
		Name  string  `json:"name"`
		Scale float32 `json:"default_scale"`
	}
	items := []item{}
	for _, n := range s.loraNames() {
		items = append(items, item{n, s.cfg.LoRAs[n]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"loras": items, "max_per_request": MaxLoRAs})
}

// loraColumnDef stores a task's adapters; added to databases made before LoRAs.
const loraColumnDef = `loras TEXT NOT NULL DEFAULT ''`
