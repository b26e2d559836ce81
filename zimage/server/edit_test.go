package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// editGen records the jobs it is given and answers with a flat image.
type editGen struct {
	mu   sync.Mutex
	jobs []Job
}

func (g *editGen) Generate(_ context.Context, job Job) (image.Image, int64, error) {
	g.mu.Lock()
	g.jobs = append(g.jobs, job)
	g.mu.Unlock()
	return image.NewRGBA(image.Rect(0, 0, job.Width, job.Height)), job.Seed, nil
}

func (g *editGen) all() []Job {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Job(nil), g.jobs...)
}

func newEditEnv(t *testing.T) (*testEnv, *editGen) {
	g := &editGen{}
	e := startServer(t, t.TempDir(), newTestGen(), func(c *Config) { c.Generator = g; c.Resolution = 1024 })
	return e, g
}

func fixtureBytes(t *testing.T, rel string) []byte {
	data, err := os.ReadFile(fixturefs.Path(t, rel))
	require.NoError(t, err)
	return data
}

// multipartBody builds an images/edits request like the SDKs do.
func multipartBody(t *testing.T, files map[string][]byte, fields map[string]string) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for name, data := range files {
		w, err := mw.CreateFormFile(name, name+".png")
		require.NoError(t, err)
		_, _ = w.Write(data)
	}
	for k, v := range fields {
		require.NoError(t, mw.WriteField(k, v))
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), buf.Bytes()
}

func postMultipart(t *testing.T, url, key, ct string, body []byte) *response {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", ct)
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := &response{Status: resp.StatusCode, Header: resp.Header}
	out.Body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	return out
}

// hugePNGHeader is a PNG whose header claims w×h pixels.
func hugePNGHeader(t *testing.T, w, h uint32) []byte {
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))))
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// TestOpenAIEdits: a multipart edit (image, mask, n, strength, no size)
// reaches the generator with the decoded images at the image's size, is
// billed per image like a generation, and its stored input is dropped once
// the task settles.
func TestOpenAIEdits(t *testing.T) {
	e, g := newEditEnv(t)
	key, info := e.addKey(100, 0)
	init := fixtureBytes(t, "fixtures/e2e_img2img/init_64x96.png")
	mask := fixtureBytes(t, "fixtures/e2e_inpaint/mask_rect_64x96.png")
	ct, body := multipartBody(t, map[string][]byte{"image": init, "mask": mask},
		map[string]string{"prompt": "a fox", "n": "2", "response_format": "b64_json", "strength": "0.7", "seed": "5", "model": "z-image-turbo"})
	r := postMultipart(t, e.url+"/v1/images/edits", key, ct, body)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var out struct {
		Data []struct {
			B64 string `json:"b64_json"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &out))
	require.Len(t, out.Data, 2)
	png0, err := base64.StdEncoding.DecodeString(out.Data[0].B64)
	require.NoError(t, err)
	cfg, err := png.DecodeConfig(bytes.NewReader(png0))
	require.NoError(t, err)
	assert.Equal(t, [2]int{96, 64}, [2]int{cfg.Width, cfg.Height})

	jobs := g.all()
	require.Len(t, jobs, 2)
	for i, j := range jobs {
		require.NotNil(t, j.Image)
		require.NotNil(t, j.Mask)
		assert.Equal(t, image.Pt(96, 64), j.Image.Bounds().Size())
		assert.Equal(t, 0.7, j.Strength)
		assert.Equal(t, int64(5+i), j.Seed)
	}
	assert.Equal(t, int64(100-2*15), e.key(info.ID).Credits)
	var left int64
	require.NoError(t, e.srv.db.q.queryRow(context.Background(), `SELECT COUNT(*) FROM zimage_task_edits`).Scan(&left))
	assert.Equal(t, int64(0), left, "stored inputs of settled tasks")

	// An explicit size wins; the image is resized to it by the pipeline.
	ct, body = multipartBody(t, map[string][]byte{"image[]": init}, map[string]string{"prompt": "a fox", "size": "64x64"})
	r = postMultipart(t, e.url+"/v1/images/edits", key, ct, body)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	jobs = g.all()
	assert.Equal(t, 64, jobs[2].Width)
	assert.Nil(t, jobs[2].Mask)
	assert.Equal(t, 0.0, jobs[2].Strength)
}

// TestOpenAIEditErrors: bad inputs are 400s with the reason, in OpenAI's
// error shape, and reserve nothing.
func TestOpenAIEditErrors(t *testing.T) {
	e, g := newEditEnv(t)
	key, info := e.addKey(100, 0)
	init := fixtureBytes(t, "fixtures/e2e_img2img/init_64x96.png")
	small := fixtureBytes(t, "fixtures/vae_small.png")
	for name, tc := range map[string]struct {
		files  map[string][]byte
		fields map[string]string
		msg    string
	}{
		"no image":   {nil, map[string]string{"prompt": "x"}, "\"image\" is required"},
		"garbage":    {map[string][]byte{"image": []byte("hello")}, map[string]string{"prompt": "x"}, "not a PNG or JPEG"},
		"huge":       {map[string][]byte{"image": hugePNGHeader(t, 50000, 50000)}, map[string]string{"prompt": "x"}, "exceed the limit"},
		"mask size":  {map[string][]byte{"image": init, "mask": small}, map[string]string{"prompt": "x"}, "same size"},
		"strength":   {map[string][]byte{"image": init}, map[string]string{"prompt": "x", "strength": "1.5"}, "strength"},
		"no prompt":  {map[string][]byte{"image": init}, nil, "prompt"},
		"bad n":      {map[string][]byte{"image": init}, map[string]string{"prompt": "x", "n": "99"}, "\"n\""},
		"bad size":   {map[string][]byte{"image": init}, map[string]string{"prompt": "x", "size": "100x100"}, "size"},
		"tiny image": {map[string][]byte{"image": hugePNGHeaderReal(t, 20, 20)}, map[string]string{"prompt": "x"}, "pass a \"size\""},
	} {
		ct, body := multipartBody(t, tc.files, tc.fields)
		r := postMultipart(t, e.url+"/v1/images/edits", key, ct, body)
		var oe struct {
			Error struct{ Message, Type string }
		}
		require.NoError(t, json.Unmarshal(r.Body, &oe), name)
		assert.Equal(t, 400, r.Status, name)
		assert.Contains(t, oe.Error.Message, tc.msg, name)
		assert.Equal(t, "invalid_request_error", oe.Error.Type, name)
	}
	r := do(t, "POST", e.url+"/v1/images/edits", key, map[string]any{"prompt": "x"})
	assert.Equal(t, 400, r.Status)
	assert.Contains(t, string(r.Body), "multipart/form-data")
	k := e.key(info.ID)
	assert.Equal(t, int64(100), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
	assert.Empty(t, g.all())
}

func hugePNGHeaderReal(t *testing.T, w, h int) []byte {
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))))
	return buf.Bytes()
}

// TestGenerateWithImage: POST /api/generate takes base64 "image", "mask"
// and "strength"; bad ones are 400s; URLs are refused, never fetched.
func TestGenerateWithImage(t *testing.T) {
	e, g := newEditEnv(t)
	key, info := e.addKey(100, 0)
	b64 := base64.StdEncoding.EncodeToString
	init := fixtureBytes(t, "fixtures/e2e_img2img/init_64x96.png")
	mask := fixtureBytes(t, "fixtures/e2e_inpaint/mask_rect_64x96.png")
	r := e.generate(key, map[string]any{"prompt": "a fox", "aspect_ratio": "4:3", "image": "data:image/png;base64," + b64(init),
		"mask": b64(mask), "strength": 0.5})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var d struct {
		TaskID string `json:"task_id"`
	}
	r.data(&d)
	assert.Equal(t, "SUCCESS", e.waitDone(key, d.TaskID).Status)
	jobs := g.all()
	require.Len(t, jobs, 1)
	assert.Equal(t, image.Pt(96, 64), jobs[0].Image.Bounds().Size())
	assert.NotNil(t, jobs[0].Mask)
	assert.Equal(t, 0.5, jobs[0].Strength)
	assert.Equal(t, int64(85), e.key(info.ID).Credits)

	for name, tc := range map[string]struct {
		body map[string]any
		msg  string
	}{
		"url":           {map[string]any{"image": "https://example.com/cat.png"}, "does not fetch URLs"},
		"base64":        {map[string]any{"image": "!!!"}, "invalid base64"},
		"not image":     {map[string]any{"image": b64([]byte("text"))}, "not a PNG or JPEG"},
		"mask alone":    {map[string]any{"mask": b64(mask)}, "needs an \"image\""},
		"strength only": {map[string]any{"strength": 0.5}, "needs an \"image\""},
		"strength type": {map[string]any{"image": b64(init), "strength": "high"}, "must be a number"},
		"strength zero": {map[string]any{"image": b64(init), "strength": 0}, "(0, 1]"},
		"mask size":     {map[string]any{"image": b64(init), "mask": b64(fixtureBytes(t, "fixtures/vae_small.png"))}, "same size"},
	} {
		tc.body["prompt"], tc.body["aspect_ratio"] = "x", "1:1"
		r := e.generate(key, tc.body)
		assert.Equal(t, 400, r.Status, name)
		assert.Contains(t, r.Env.Message, tc.msg, name)
	}
	assert.Equal(t, int64(85), e.key(info.ID).Credits)
	assert.Len(t, g.all(), 1)
}

// TestOpenAINodeSDKEdit runs the official OpenAI Node SDK's images.edit
// (testdata/openai-sdk/sdk.mjs edit; skipped unless
// scripts/openai-sdk-install.sh installed it): the multipart upload reaches
// the generator with both images.
func TestOpenAINodeSDKEdit(t *testing.T) {
	node, dir := nodeSDK(t)
	e, g := newEditEnv(t)
	key, info := e.addKey(100, 0)
	res := sdkRun(t, node, dir, "edit", e.url+"/v1", key, "a fox in the snow",
		fixturefs.Path(t, "fixtures/e2e_img2img/init_64x96.png"), fixturefs.Path(t, "fixtures/e2e_inpaint/mask_rect_64x96.png"))
	require.Equal(t, true, res["ok"], "%v", res)
	assert.Equal(t, 1.0, res["images"])
	jobs := g.all()
	require.Len(t, jobs, 1)
	assert.Equal(t, image.Pt(96, 64), jobs[0].Image.Bounds().Size())
	assert.NotNil(t, jobs[0].Mask)
	assert.Equal(t, int64(85), e.key(info.ID).Credits)
}

// FuzzDecodeOpenAIEdit: arbitrary multipart bodies never panic; an accepted
// one always carries a decodable image and a valid size.
func FuzzDecodeOpenAIEdit(f *testing.F) {
	t := &testing.T{}
	var img bytes.Buffer
	_ = png.Encode(&img, image.NewGray(image.Rect(0, 0, 64, 64)))
	ct, body := multipartBody(t, map[string][]byte{"image": img.Bytes(), "mask": img.Bytes()},
		map[string]string{"prompt": "a fox", "n": "2", "strength": "0.5", "size": "64x64"})
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	f.Add(boundary, body)
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x\"\r\n\r\n\x89PNG\r\n--b--\r\n"))
	f.Add("b", []byte{})
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		req, _, e := decodeOpenAIEdit("multipart/form-data; boundary="+boundary, body, 1024, 4)
		if e != nil {
			return
		}
		if req.Edit == nil || checkSize(req.Width, req.Height) != nil {
			t.Fatalf("accepted %+v", req)
		}
		if _, ae := checkImage("image", req.Edit.Image); ae != nil {
			t.Fatal(ae)
		}
	})
}

// editPipelineGen runs jobs on the real pipeline, image inputs included
// (what cmd/zimage's serve adapter does).
type editPipelineGen struct{ p *zimage.Pipeline }

func (g editPipelineGen) Generate(ctx context.Context, job Job) (image.Image, int64, error) {
	res, err := g.p.Run(ctx, zimage.Request{Prompt: job.Prompt, Width: job.Width, Height: job.Height, Seed: job.Seed,
		Image: job.Image, Mask: job.Mask, Strength: job.Strength})
	if err != nil {
		return nil, 0, err
	}
	return res.Image, res.Seed, nil
}

// TestOpenAIEditTinyModel: an inpainting edit through the HTTP API on the
// tiny fixture model gives diffusers' image (≥ 99.9% of values within ±1,
// none off by more than 4).
func TestOpenAIEditTinyModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	var c fixturefs.EditCase
	for _, ec := range fixturefs.EditCases(t) {
		if ec.Name == "en_64x96_seed42_strength0.7" {
			c = ec
		}
	}
	p, err := zimage.Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), zimage.WithDevice("cpu"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	e := startServer(t, t.TempDir(), newTestGen(), func(cfg *Config) { cfg.Generator = editPipelineGen{p}; cfg.Resolution = 1024 })
	key, _ := e.addKey(100, 0)
	ct, body := multipartBody(t, map[string][]byte{
		"image": fixtureBytes(t, "fixtures/"+c.Dir+"/"+c.InitPNG), "mask": fixtureBytes(t, "fixtures/"+c.Dir+"/"+c.MaskPNG),
	}, map[string]string{"prompt": c.Prompt, "seed": "42", "strength": "0.7", "response_format": "b64_json"})
	r := postMultipart(t, e.url+"/v1/images/edits", key, ct, body)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var out struct {
		Data []struct {
			B64 string `json:"b64_json"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &out))
	data, err := base64.StdEncoding.DecodeString(out.Data[0].B64)
	require.NoError(t, err)
	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(t, err)
	d := fixturefs.ComparePixels(t, fixturefs.RGB(img), fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/"+c.Dir+"/"+c.Name+".png")))
	t.Logf("%d of %d values more than 1 off, max %d", d.Off1, d.Total, d.Max)
	assert.False(t, float64(d.Off1) > 0.001*float64(d.Total) || d.Max > 4, "image differs from diffusers'")
}

// FuzzGenerateEdit: the image fields of POST /api/generate never panic; an
// accepted image decodes within the limits and a mask has its size.
func FuzzGenerateEdit(f *testing.F) {
	var img bytes.Buffer
	_ = png.Encode(&img, image.NewGray(image.Rect(0, 0, 20, 10)))
	b64 := base64.StdEncoding.EncodeToString(img.Bytes())
	for _, s := range []string{
		`{"prompt":"x","aspect_ratio":"1:1","image":"` + b64 + `"}`,
		`{"prompt":"x","aspect_ratio":"1:1","image":"data:image/png;base64,` + b64 + `","mask":"` + b64 + `","strength":0.5}`,
		`{"prompt":"x","aspect_ratio":"1:1","image":"https://x/y.png"}`,
		`{"prompt":"x","aspect_ratio":"1:1","mask":"` + b64 + `"}`,
		`{"prompt":"x","aspect_ratio":"1:1","image":"` + b64 + `","strength":"1"}`,
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
		if req.Edit == nil {
			return
		}
		im, ae := checkImage("image", req.Edit.Image)
		if ae != nil {
			t.Fatal(ae)
		}
		if req.Edit.Mask != nil {
			m, ae := checkImage("mask", req.Edit.Mask)
			if ae != nil || m.Bounds().Size() != im.Bounds().Size() {
				t.Fatalf("mask accepted: %v", ae)
			}
		}
		if s := req.Edit.Strength; s < 0 || s > 1 {
			t.Fatalf("strength %v accepted", s)
		}
	})
}
