package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/zimage/zimage/zimage/imageproc"
)

// Image editing: OpenAI's POST /v1/images/edits (multipart: image, mask,
// prompt, n, size, response_format, model; extensions seed and strength) and
// the optional "image", "mask" (base64 PNG/JPEG) and "strength" fields of
// POST /api/generate. The server never fetches URLs. Images are checked at
// submission (format, pixel limit, mask size; a bad one is a 400 and
// nothing is reserved), stored with the task (zimage_task_edits, so a worker
// on another machine gets them) and billed like generations.

// Limits of image inputs.
const (
	// MaxImageBytes bounds each uploaded image file.
	MaxImageBytes = 8 << 20
	// maxInputPixels bounds each uploaded image (checked on its header).
	maxInputPixels = maxSide * maxSide
)

// editInput is the image input of a task, as the client sent it.
type editInput struct {
	Image, Mask []byte  // PNG or JPEG; Mask nil without one
	Strength    float64 // 0: the pipeline's default (0.6, 1.0 with a mask)
}

func init() {
	appSchema = append(appSchema, `CREATE TABLE IF NOT EXISTS zimage_task_edits (
		task_id  TEXT PRIMARY KEY,
		image    TEXT NOT NULL,
		mask     TEXT NOT NULL,
		strength TEXT NOT NULL
	)`)
}

// bodyLimit is the request body limit of r: the configured one, plus room
// for two images on the endpoints that take them.
func (s *Server) bodyLimit(r *http.Request) int64 {
	switch r.URL.Path {
	case "/v1/images/edits":
		return s.cfg.MaxBodyBytes + 2*MaxImageBytes + 64<<10 // multipart framing
	case "/api/generate":
		return s.cfg.MaxBodyBytes + 2*int64(base64.StdEncoding.EncodedLen(MaxImageBytes))
	}
	return s.cfg.MaxBodyBytes
}

// checkBodySize holds a JSON body without an "image" to the configured
// limit (bodyLimit let it be larger in case it had one).
func (s *Server) checkBodySize(r *http.Request, body []byte) *apiError {
	if r.URL.Path != "/api/generate" || int64(len(body)) <= s.cfg.MaxBodyBytes {
		return nil
	}
	var probe struct {
		Image json.RawMessage `json:"image"`
	}
	if json.Unmarshal(body, &probe) != nil || len(probe.Image) == 0 || string(probe.Image) == "null" {
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", s.cfg.MaxBodyBytes)
	}
	return nil
}

// checkImage decodes one uploaded image (header first, so an oversized one
// costs nothing) and returns it.
func checkImage(field string, data []byte) (image.Image, *apiError) {
	if len(data) > MaxImageBytes {
		return nil, errorf(http.StatusBadRequest, "field %q: the image is %d bytes; the limit is %d", field, len(data), MaxImageBytes)
	}
	img, err := imageproc.Decode(bytes.NewReader(data), field, maxInputPixels)
	if err != nil {
		var ie *imageproc.Error
		if errors.As(err, &ie) {
			return nil, errorf(http.StatusBadRequest, "field %q: %s", field, ie.Reason)
		}
		return nil, errorf(http.StatusBadRequest, "field %q: %v", field, err)
	}
	return img, nil
}

// newEditInput checks an image, an optional mask and a strength (present:
// given by the client, then it must be in (0, 1]) and returns the input
// and the image's size.
func newEditInput(img, mask []byte, strength float64, present bool) (*editInput, image.Point, *apiError) {
	if present && !(strength > 0 && strength <= 1) {
		return nil, image.Point{}, errorf(http.StatusBadRequest, "field \"strength\" must be in (0, 1]")
	}
	im, ae := checkImage("image", img)
	if ae != nil {
		return nil, image.Point{}, ae
	}
	size := im.Bounds().Size()
	if mask != nil {
		m, ae := checkImage("mask", mask)
		if ae != nil {
			return nil, image.Point{}, ae
		}
		if ms := m.Bounds().Size(); ms != size {
			return nil, image.Point{}, errorf(http.StatusBadRequest, "field \"mask\": %dx%d, but the image is %dx%d; they must be the same size",
				ms.X, ms.Y, size.X, size.Y)
		}
	}
	return &editInput{Image: img, Mask: mask, Strength: strength}, size, nil
}

// fitSize is the output size for an image of size sz when the request names
// none: its size within the server's limits and the resolution's pixel
// count, aspect kept, sides multiples of 16.
func fitSize(sz image.Point, resolution int) (w, h int, e *apiError) {
	scale := math.Min(1, float64(resolution)/math.Sqrt(float64(sz.X)*float64(sz.Y)))
	scale = math.Min(scale, math.Min(float64(maxSide)/float64(sz.X), float64(maxSide)/float64(sz.Y)))
	w, h = int(float64(sz.X)*scale)/16*16, int(float64(sz.Y)*scale)/16*16
	if err := checkSize(w, h); err != nil {
		return 0, 0, errorf(http.StatusBadRequest, "field \"image\" is %dx%d: pass a \"size\" (%v)", sz.X, sz.Y, err)
	}
	return w, h, nil
}

// decodeGenerateEdit reads the optional "image", "mask" (base64) and
// "strength" fields of POST /api/generate into req.
func decodeGenerateEdit(body []byte, req *generateRequest) *apiError {
	var raw struct {
		Image    json.RawMessage `json:"image"`
		Mask     json.RawMessage `json:"mask"`
		Strength json.RawMessage `json:"strength"`
	}
	if e := decodeJSONObject(body, &raw); e != nil {
		return e
	}
	img64, hasImage, e := jsonString("image", raw.Image)
	if e != nil {
		return e
	}
	mask64, hasMask, e := jsonString("mask", raw.Mask)
	if e != nil {
		return e
	}
	strength, hasStrength, e := jsonFloat("strength", raw.Strength)
	if e != nil {
		return e
	}
	switch {
	case !hasImage && hasMask:
		return errorf(http.StatusBadRequest, "field \"mask\" needs an \"image\"")
	case !hasImage && hasStrength:
		return errorf(http.StatusBadRequest, "field \"strength\" needs an \"image\"")
	case !hasImage:
		return nil
	}
	img, e := decodeBase64Image("image", img64)
	if e != nil {
		return e
	}
	var mask []byte
	if hasMask {
		if mask, e = decodeBase64Image("mask", mask64); e != nil {
			return e
		}
	}
	req.Edit, _, e = newEditInput(img, mask, strength, hasStrength)
	return e
}

// decodeBase64Image decodes standard base64, with or without a data: URL
// prefix; anything that looks like a URL to fetch is refused.
func decodeBase64Image(field, s string) ([]byte, *apiError) {
	if strings.HasPrefix(s, "data:") {
		if i := strings.Index(s, ";base64,"); i >= 0 {
			s = s[i+len(";base64,"):]
		}
	} else if strings.Contains(s, "://") {
		return nil, errorf(http.StatusBadRequest, "field %q: the server does not fetch URLs; send the image as base64", field)
	}
	if base64.StdEncoding.DecodedLen(len(s)) > MaxImageBytes+3 {
		return nil, errorf(http.StatusBadRequest, "field %q: the image is larger than %d bytes", field, MaxImageBytes)
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "field %q: invalid base64: %v", field, err)
	}
	return data, nil
}

// jsonFloat decodes a raw field that must be a JSON number.
func jsonFloat(name string, raw json.RawMessage) (v float64, present bool, e *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	if raw[0] == '"' || json.Unmarshal(raw, &v) != nil || math.IsNaN(v) {
		return 0, true, errorf(http.StatusBadRequest, "field %q must be a number", name)
	}
	return v, true, nil
}

// decodeOpenAIEdit parses a POST /v1/images/edits multipart body (the shape
// the official SDKs send: "image" or "image[]" file parts, "mask", and text
// fields) and validates it like a generation request.
func decodeOpenAIEdit(contentType string, body []byte, resolution, maxN int) (generateRequest, string, *apiError) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return generateRequest{}, "", errorf(http.StatusBadRequest, "the request must be multipart/form-data with an \"image\" file")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	fields := map[string]json.RawMessage{}
	var img, mask []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return generateRequest{}, "", errorf(http.StatusBadRequest, "invalid multipart body: %v", err)
		}
		name := part.FormName()
		data, err := io.ReadAll(io.LimitReader(part, MaxImageBytes+1))
		part.Close()
		if err != nil {
			return generateRequest{}, "", errorf(http.StatusBadRequest, "invalid multipart body: %v", err)
		}
		switch name {
		case "image", "image[]":
			if img != nil {
				return generateRequest{}, "", errorf(http.StatusBadRequest, "field \"image\": one image per request")
			}
			img = data
		case "mask":
			mask = data
		case "n", "seed":
			fields[name] = json.RawMessage(bytes.TrimSpace(data))
		case "strength":
			fields[name] = json.RawMessage(bytes.TrimSpace(data))
		default: // prompt, size, response_format, model, and anything else as text
			q, _ := json.Marshal(string(data))
			fields[name] = q
		}
	}
	if img == nil {
		return generateRequest{}, "", errorf(http.StatusBadRequest, "field \"image\" is required")
	}
	strength, hasStrength, e := jsonFloat("strength", fields["strength"])
	if e != nil {
		return generateRequest{}, "", e
	}
	ed, size, e := newEditInput(img, mask, strength, hasStrength)
	if e != nil {
		return generateRequest{}, "", e
	}
	j, _ := json.Marshal(map[string]json.RawMessage{
		"prompt": fields["prompt"], "n": fields["n"], "size": fields["size"],
		"response_format": fields["response_format"], "model": fields["model"], "seed": fields["seed"],
	})
	req, format, e := decodeOpenAIRequest(j, resolution, maxN)
	if e != nil {
		return generateRequest{}, "", e
	}
	if s, _, _ := jsonString("size", fields["size"]); s == "" || s == "auto" {
		// No size: the image's own (upstream takes the image's size).
		if req.Width, req.Height, e = fitSize(size, resolution); e != nil {
			return generateRequest{}, "", e
		}
		req.AspectRatio = ""
	}
	req.Edit = ed
	return req, format, nil
}

// decodeOpenAIBody decodes the body of an OpenAI images endpoint.
func (s *Server) decodeOpenAIBody(r *http.Request, body []byte) (generateRequest, string, *apiError) {
	if r.URL.Path == "/v1/images/edits" {
		return decodeOpenAIEdit(r.Header.Get("Content-Type"), body, s.cfg.Resolution, s.cfg.MaxN)
	}
	return decodeOpenAIRequest(body, s.cfg.Resolution, s.cfg.MaxN)
}

// insertEdit stores a task's image input in the submission transaction.
func insertEdit(ctx context.Context, q dbtx, taskID string, e *editInput) error {
	if e == nil {
		return nil
	}
	enc := base64.StdEncoding.EncodeToString
	_, err := q.exec(ctx, `INSERT INTO zimage_task_edits (task_id, image, mask, strength) VALUES (?, ?, ?, ?)`,
		taskID, enc(e.Image), enc(e.Mask), strconv.FormatFloat(e.Strength, 'g', -1, 64))
	if err != nil {
		return fmt.Errorf("server: store the task's image: %w", err)
	}
	return nil
}

// deleteEdit drops a settled task's image input (in its settlement
// transaction).
func deleteEdit(ctx context.Context, q dbtx, taskID string) error {
	_, err := q.exec(ctx, `DELETE FROM zimage_task_edits WHERE task_id = ?`, taskID)
	return err
}

// jobEdit is a task's decoded image input, applied to each of its jobs.
type jobEdit struct {
	image, mask image.Image
	strength    float64
}

// loadEdit reads and decodes a task's image input (nil when it has none).
func loadEdit(ctx context.Context, q dbtx, taskID string) (*jobEdit, error) {
	var img64, mask64, strength string
	err := q.queryRow(ctx, `SELECT image, mask, strength FROM zimage_task_edits WHERE task_id = ?`, taskID).Scan(&img64, &mask64, &strength)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server: load the image of %s: %w", taskID, err)
	}
	je := &jobEdit{}
	if je.strength, err = strconv.ParseFloat(strength, 64); err != nil {
		return nil, fmt.Errorf("server: task %s: strength %q: %w", taskID, strength, err)
	}
	decode := func(name, s string) (image.Image, error) {
		data, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("server: task %s: %s: %w", taskID, name, err)
		}
		return imageproc.Decode(bytes.NewReader(data), name, maxInputPixels)
	}
	if je.image, err = decode("image", img64); err != nil {
		return nil, err
	}
	if mask64 != "" {
		if je.mask, err = decode("mask", mask64); err != nil {
			return nil, err
		}
	}
	return je, nil
}

// apply sets the job's image fields.
func (je *jobEdit) apply(job *Job) {
	if je != nil {
		job.Image, job.Mask, job.Strength = je.image, je.mask, je.strength
	}
}
