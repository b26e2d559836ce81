package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxPromptChars is the longest prompt accepted, in characters (code points).
const MaxPromptChars = 1000

// apiError is an error with the HTTP status it is reported with. Its Error
// text is what the client sees in "message".
type apiError struct {
	status     int
	msg        string
	retryAfter int    // seconds; sent as Retry-After when > 0
	allow      string // methods, sent as Allow (405)
	noRetry    bool   // sent as "x-should-retry: false": the OpenAI SDKs would retry a 409
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// envelope is the hosted API's response shape, for success and errors alike.
type envelope struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

// generateRequest is a validated POST /api/generate (or OpenAI) request.
type generateRequest struct {
	Prompt      string
	AspectRatio string // "" for OpenAI requests given by size
	Width       int
	Height      int
	Seed        int64 // -1 = pick one at submission
	N           int
	LoRAs       string     // the "loras" field as stored (loraColumn; a string keeps the struct comparable)
	Edit        *editInput // image input (edit.go); nil for text-to-image
}

// rawGenerate is the JSON body of POST /api/generate. Fields are raw so that
// a field of the wrong type is reported by name, and absent differs from
// empty.
type rawGenerate struct {
	Prompt      json.RawMessage `json:"prompt"`
	AspectRatio json.RawMessage `json:"aspect_ratio"`
	Seed        json.RawMessage `json:"seed"`
	Size        json.RawMessage `json:"size"`
}

// decodeJSONObject reads exactly one JSON object from body into v.
func decodeJSONObject(body []byte, v any) *apiError {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return errorf(http.StatusBadRequest, "request body is empty; want a JSON object")
	}
	if trimmed[0] != '{' {
		return errorf(http.StatusBadRequest, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return errorf(http.StatusBadRequest, "field %q has the wrong type: want %s", te.Field, te.Type)
		}
		return errorf(http.StatusBadRequest, "invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "invalid JSON: data after the object")
	}
	return nil
}

// jsonString decodes a raw field that must be a JSON string.
func jsonString(name string, raw json.RawMessage) (s string, present bool, e *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, errorf(http.StatusBadRequest, "field %q must be a string", name)
	}
	return s, true, nil
}

// jsonInt decodes a raw field that must be a JSON integer.
func jsonInt(name string, raw json.RawMessage) (v int64, present bool, e *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var n json.Number
	if raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
		return 0, true, errorf(http.StatusBadRequest, "field %q must be an integer", name)
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		// Accept integral floats such as 42.0 or 1e3.
		f, ferr := strconv.ParseFloat(n.String(), 64)
		if ferr != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, true, errorf(http.StatusBadRequest, "field %q must be an integer", name)
		}
		v = int64(f)
	}
	return v, true, nil
}

func checkPrompt(p string, present bool) *apiError {
	if !present || strings.TrimSpace(p) == "" {
		return errorf(http.StatusBadRequest, "field \"prompt\" is required")
	}
	if n := utf8.RuneCountInString(p); n > MaxPromptChars {
		return errorf(http.StatusBadRequest, "field \"prompt\" is %d characters long; the limit is %d", n, MaxPromptChars)
	}
	return nil
}

func checkSeed(seed int64, present bool) (int64, *apiError) {
	if !present {
		return -1, nil
	}
	// The ceiling leaves room for the consecutive seeds of an n-image request.
	if seed < -1 || seed > math.MaxInt64-1024 {
		return 0, errorf(http.StatusBadRequest, "field \"seed\" must be -1 (random) or a non-negative integer below 2^63-1024")
	}
	return seed, nil
}

// decodeGenerateRequest parses and validates a POST /api/generate body.
// resolution is the base size that aspect ratios are scaled to.
func decodeGenerateRequest(body []byte, resolution int) (generateRequest, *apiError) {
	var raw rawGenerate
	if e := decodeJSONObject(body, &raw); e != nil {
		return generateRequest{}, e
	}
	prompt, present, e := jsonString("prompt", raw.Prompt)
	if e != nil {
		return generateRequest{}, e
	}
	if e := checkPrompt(prompt, present); e != nil {
		return generateRequest{}, e
	}
	aspect, present, e := jsonString("aspect_ratio", raw.AspectRatio)
	if e != nil {
		return generateRequest{}, e
	}
	if !present || aspect == "" {
		return generateRequest{}, errorf(http.StatusBadRequest, "field \"aspect_ratio\" is required (one of %s)", strings.Join(AspectRatios(), ", "))
	}
	w, h, ok := SizeFor(aspect, resolution)
	if !ok {
		return generateRequest{}, errorf(http.StatusBadRequest, "unknown aspect_ratio %q: want one of %s", aspect, strings.Join(AspectRatios(), ", "))
	}
	seed, present, e := jsonInt("seed", raw.Seed)
	if e != nil {
		return generateRequest{}, e
	}
	if seed, e = checkSeed(seed, present); e != nil {
		return generateRequest{}, e
	}
	size, present, e := jsonString("size", raw.Size)
	if e != nil {
		return generateRequest{}, e
	}
	if present && size != "" {
		sw, sh, err := parseSize(size)
		if err != nil {
			return generateRequest{}, errorf(http.StatusBadRequest, "field \"size\": %v", err)
		}
		w, h = sw, sh
	}
	req := generateRequest{Prompt: prompt, AspectRatio: aspect, Width: w, Height: h, Seed: seed, N: 1}
	if e := decodeGenerateEdit(body, &req); e != nil {
		return generateRequest{}, e
	}
	return req, nil
}

// rawOpenAI is the JSON body of POST /v1/images/generations.
type rawOpenAI struct {
	Prompt         json.RawMessage `json:"prompt"`
	N              json.RawMessage `json:"n"`
	Size           json.RawMessage `json:"size"`
	ResponseFormat json.RawMessage `json:"response_format"`
	Seed           json.RawMessage `json:"seed"`
	Model          json.RawMessage `json:"model"`
}

// decodeOpenAIRequest parses and validates an OpenAI images request.
func decodeOpenAIRequest(body []byte, resolution, maxN int) (generateRequest, string, *apiError) {
	var raw rawOpenAI
	if e := decodeJSONObject(body, &raw); e != nil {
		return generateRequest{}, "", e
	}
	prompt, present, e := jsonString("prompt", raw.Prompt)
	if e != nil {
		return generateRequest{}, "", e
	}
	if e := checkPrompt(prompt, present); e != nil {
		return generateRequest{}, "", e
	}
	n, present, e := jsonInt("n", raw.N)
	if e != nil {
		return generateRequest{}, "", e
	}
	if !present {
		n = 1
	}
	if n < 1 || n > int64(maxN) {
		return generateRequest{}, "", errorf(http.StatusBadRequest, "field \"n\" must be between 1 and %d", maxN)
	}
	w, h, _ := SizeFor("1:1", resolution)
	aspect := "1:1"
	size, present, e := jsonString("size", raw.Size)
	if e != nil {
		return generateRequest{}, "", e
	}
	if present && size != "" && size != "auto" {
		sw, sh, err := parseSize(size)
		if err != nil {
			return generateRequest{}, "", errorf(http.StatusBadRequest, "field \"size\": %v", err)
		}
		w, h, aspect = sw, sh, ""
	}
	format, present, e := jsonString("response_format", raw.ResponseFormat)
	if e != nil {
		return generateRequest{}, "", e
	}
	if !present || format == "" {
		format = "url"
	}
	if format != "url" && format != "b64_json" {
		return generateRequest{}, "", errorf(http.StatusBadRequest, "field \"response_format\" must be \"url\" or \"b64_json\"")
	}
	if _, _, e := jsonString("model", raw.Model); e != nil {
		return generateRequest{}, "", e
	}
	seed, present, e := jsonInt("seed", raw.Seed)
	if e != nil {
		return generateRequest{}, "", e
	}
	if seed, e = checkSeed(seed, present); e != nil {
		return generateRequest{}, "", e
	}
	return generateRequest{Prompt: prompt, AspectRatio: aspect, Width: w, Height: h, Seed: seed, N: int(n)}, format, nil
}
