package server

import (
	"net/http"
)

// DefaultModelID is the model name GET /v1/models reports by default.
const DefaultModelID = "z-image-turbo"

// modelObject is OpenAI's Model object, as its SDKs decode it.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) model() modelObject {
	return modelObject{ID: s.cfg.ModelID, Object: "model", Created: s.cfg.ModelCreated.Unix(), OwnedBy: "zimage"}
}

// handleModels is GET /v1/models (the list, with the one model served) and
// GET /v1/models/{id}.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeOpenAIError(w, methodNotAllowed("GET"))
		return
	}
	if _, err := s.auth(r); err != nil {
		s.fail(w, r, writeOpenAIError, err)
		return
	}
	id := r.PathValue("id")
	if id == "" && r.URL.Path == "/v1/models" {
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{s.model()}})
		return
	}
	if id != s.cfg.ModelID {
		e := errorf(http.StatusNotFound, "the model %q does not exist; this server serves %q", id, s.cfg.ModelID)
		writeOpenAIError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, s.model())
}
