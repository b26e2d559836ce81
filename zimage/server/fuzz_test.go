package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzGenerateRequest checks that any body decodes to either a 400 (or
// nothing else) or a request that satisfies every documented limit, and
// that a valid request re-encoded decodes to the same thing.
func FuzzGenerateRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"a fox","aspect_ratio":"1:1"}`,
		`{"prompt":"a fox","aspect_ratio":"16:9","seed":42,"size":"1024*576"}`,
		`{"prompt":"x","aspect_ratio":"9:16","seed":-1}`,
		`{"prompt":"x","aspect_ratio":"3:4","seed":1e3}`,
		`{"prompt":"x","aspect_ratio":"4:3","size":"64x64"}`,
		`{"prompt":"","aspect_ratio":"1:1"}`,
		`{"prompt":null}`,
		`{"prompt":"\u00e9\ud83d\ude00","aspect_ratio":"1:1","extra":[1,2]}`,
		`[]`, `{`, `{"prompt":"x","aspect_ratio":"1:1"}x`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := decodeGenerateRequest(body, 1024)
		if e != nil {
			if e.status != http.StatusBadRequest || e.msg == "" {
				t.Fatalf("error %d %q", e.status, e.msg)
			}
			return
		}
		if strings.TrimSpace(req.Prompt) == "" || utf8.RuneCountInString(req.Prompt) > MaxPromptChars {
			t.Fatalf("prompt %q accepted", req.Prompt)
		}
		if _, _, ok := SizeFor(req.AspectRatio, 1024); !ok {
			t.Fatalf("aspect ratio %q accepted", req.AspectRatio)
		}
		if req.Width%16 != 0 || req.Height%16 != 0 || req.Width < 16 || req.Height < 16 || req.Width > maxSide || req.Height > maxSide {
			t.Fatalf("size %dx%d accepted", req.Width, req.Height)
		}
		if req.Seed < -1 || req.N != 1 {
			t.Fatalf("seed %d n %d", req.Seed, req.N)
		}
		again, _ := json.Marshal(map[string]any{
			"prompt": req.Prompt, "aspect_ratio": req.AspectRatio, "seed": req.Seed, "size": sizeText(req.Width, req.Height),
		})
		req2, e := decodeGenerateRequest(again, 1024)
		if e != nil {
			t.Fatalf("re-encoded request refused: %v (%s)", e, again)
		}
		if req2 != req {
			t.Fatalf("round trip changed %+v to %+v", req, req2)
		}
	})
}

// FuzzOpenAIRequest is the same for POST /v1/images/generations.
func FuzzOpenAIRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"a fox"}`,
		`{"prompt":"a fox","n":3,"size":"512x768","response_format":"b64_json","model":"z"}`,
		`{"prompt":"a fox","size":"auto","seed":7}`,
		`{"prompt":"a fox","n":"2"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, format, e := decodeOpenAIRequest(body, 1024, 4)
		if e != nil {
			if e.status != http.StatusBadRequest {
				t.Fatalf("error %d %q", e.status, e.msg)
			}
			return
		}
		if format != "url" && format != "b64_json" {
			t.Fatalf("format %q", format)
		}
		if req.N < 1 || req.N > 4 || strings.TrimSpace(req.Prompt) == "" || req.Width%16 != 0 || req.Height%16 != 0 {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// FuzzFingerprint: any body fingerprints without panicking, and a JSON
// body re-encoded (keys sorted) has the fingerprint of the original.
func FuzzFingerprint(f *testing.F) {
	for _, s := range []string{`{"prompt":"x","seed":1}`, `{"b":[1,2,{"z":null,"a":1e3}],"a":"é"}`, `nope`, ``, `{} {}`, `[1,2]`, `"s"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fp := fingerprint("openai", body)
		if len(fp) != 64 {
			t.Fatalf("fingerprint %q", fp)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&v) != nil || dec.More() {
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			return
		}
		if fingerprint("openai", again) != fp {
			t.Fatalf("re-encoded %s fingerprints differently from %s", again, body)
		}
	})
}
