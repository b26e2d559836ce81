package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/server"
)

// syncBuffer is a bytes.Buffer safe for a server goroutine writing logs
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// startServe runs `zimage serve` in-process until the test ends and returns
// its base URL.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve", "--addr", addr}, args...), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, 0, code, "serve exit status; log:\n%s", logs.String())
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop within 60s of cancellation")
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, logs.String())
		default:
		}
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("serve not healthy after 60s:\n%s", logs.String())
	return ""
}

func addKeyCmd(t *testing.T, data string, credits string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"keys", "add", "--data", data, "--credits", credits, "--rate-per-minute", "0"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	return strings.TrimSpace(out.String())
}

func call(t *testing.T, method, url, key string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// rgbOf returns the RGB bytes of a PNG.
func rgbOf(t *testing.T, data []byte) (image.Rectangle, []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(t, err)
	b := img.Bounds()
	out := make([]byte, 0, 3*b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			out = append(out, uint8(r>>8), uint8(g>>8), uint8(bb>>8))
		}
	}
	return b, out
}

// assertMatchesFixture compares with a reference PNG of the e2e fixtures,
// with the pipeline's own tolerance: ≥ 99.9% of values within ±1, none
// more than 4 off.
func assertMatchesFixture(t *testing.T, got []byte, name string) {
	t.Helper()
	ref, err := os.ReadFile(fixturefs.Path(t, "fixtures/e2e/"+name+".png"))
	require.NoError(t, err)
	gb, g := rgbOf(t, got)
	wb, w := rgbOf(t, ref)
	require.Equal(t, wb.Size(), gb.Size(), "image size")
	off1, maxDiff := 0, 0
	for i := range w {
		d := max(int(g[i])-int(w[i]), int(w[i])-int(g[i]))
		if d > 1 {
			off1++
		}
		maxDiff = max(maxDiff, d)
	}
	t.Logf("%s: %d of %d values more than 1 off, max diff %d", name, off1, len(w), maxDiff)
	assert.True(t, float64(off1) <= 0.001*float64(len(w)) && maxDiff <= 4, "image differs from %s", name)
}

// TestServeTinyModel runs `zimage serve` on the tiny fixture model (CPU) and
// checks both APIs end to end against the reference images.
func TestServeTinyModel(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	data := t.TempDir()
	key := addKeyCmd(t, data, "100")
	url := startServe(t, "--data", data, "--model", model, "--device", "cpu", "--resolution", "64", "--price", "10", "--warmup")

	const fox = "A red fox sitting in a snowy forest at dawn, photorealistic, 35mm photo, shallow depth of field, soft golden light"
	code, body := call(t, "POST", url+"/api/generate", key, map[string]any{"prompt": fox, "aspect_ratio": "1:1", "seed": 42})
	require.Equal(t, 200, code, "%s", body)
	var gen struct {
		Code int `json:"code"`
		Data struct {
			TaskID string `json:"task_id"`
			Status string `json:"status"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &gen))
	require.Equal(t, "IN_PROGRESS", gen.Data.Status)

	var st struct {
		Data struct {
			Status   string   `json:"status"`
			Response []string `json:"response"`
			Credits  int64    `json:"consumed_credits"`
			Error    string   `json:"error_message"`
			Request  struct {
				Size string `json:"size"`
				Seed int64  `json:"seed"`
			} `json:"request"`
		} `json:"data"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		code, body = call(t, "GET", url+"/api/status?task_id="+gen.Data.TaskID, key, nil)
		require.Equal(t, 200, code, "%s", body)
		require.NoError(t, json.Unmarshal(body, &st))
		if st.Data.Status != "IN_PROGRESS" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, "SUCCESS", st.Data.Status, st.Data.Error)
	assert.Equal(t, "64*64", st.Data.Request.Size)
	assert.Equal(t, int64(42), st.Data.Request.Seed)
	assert.Equal(t, int64(10), st.Data.Credits)
	require.Len(t, st.Data.Response, 1)
	code, img := call(t, "GET", st.Data.Response[0], "", nil)
	require.Equal(t, 200, code)
	assertMatchesFixture(t, img, "en_64x64_seed42")

	// OpenAI endpoint, synchronous, non-square, b64_json.
	const panda = "一只可爱的熊猫坐在竹林里吃竹子，水墨画风格，柔和的晨光"
	code, body = call(t, "POST", url+"/v1/images/generations", key, map[string]any{
		"prompt": panda, "size": "96x64", "seed": 1234, "response_format": "b64_json",
	})
	require.Equal(t, 200, code, "%s", body)
	var oa struct {
		Data []struct {
			B64 string `json:"b64_json"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &oa))
	require.Len(t, oa.Data, 1)
	png, err := base64.StdEncoding.DecodeString(oa.Data[0].B64)
	require.NoError(t, err)
	assertMatchesFixture(t, png, "zh_64x96_seed1234")

	// 100 - 2×10 credits left: the keys command sees the server's charges.
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"keys", "list", "--data", data}, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), " 80 ")
}

func TestServeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"serve"}, 2, "--data is required"},
		{[]string{"serve", "--data", t.TempDir()}, 2, "--model is required"},
		{[]string{"serve", "--data", t.TempDir(), "--model", "/nonexistent"}, 1, "nonexistent"},
		{[]string{"serve", "--data", t.TempDir(), "--role", "api", "--database", "postgres://127.0.0.1:1/x", "--resolution", "7"}, 1, "resolution"},
		{[]string{"serve", "--data", t.TempDir(), "--role", "worker", "--model", "x"}, 1, ""},
		{[]string{"serve", "--data", t.TempDir(), "--role", "api", "--log-format", "xml"}, 2, "log-format"},
		{[]string{"serve", "extra"}, 2, "unexpected argument"},
		{[]string{"serve", "--data", t.TempDir(), "--model", "m", "--price", "0"}, 2, "at least 1"},
		{[]string{"serve", "--data", t.TempDir(), "--model", "m", "--trusted-proxy", "everyone"}, 2, "trusted proxy"},
		{[]string{"serve", "--data", t.TempDir(), "--model", "m", "--precision", "fp8"}, 2, "--precision"},
	} {
		t.Setenv("ZIMAGE_MODEL", "")
		var out, errOut bytes.Buffer
		// Never the default port: serve binds its address before anything slow.
		args := append([]string{"serve", "--addr", "127.0.0.1:0"}, tc.args[1:]...)
		code := run(context.Background(), args, &out, &errOut)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut.String())
		assert.Contains(t, errOut.String(), tc.msg, "%v", tc.args)
	}
}

// TestServeAPIRoleNoModel: the API-only role needs no model, and the
// embedded database refuses it (it needs a shared PostgreSQL).
func TestServeAPIRoleNoModel(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--role", "api"}, &out, &errOut)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut.String(), "PostgreSQL")
}

// TestServeChecksBeforeLoad: a locked data directory, a busy listen address
// and a role the database cannot serve are reported before the model loads
// (here a model path that does not exist: its error must not be the one seen).
func TestServeChecksBeforeLoad(t *testing.T) {
	t.Setenv("ZIMAGE_MODEL", "")
	missing := filepath.Join(t.TempDir(), "no-model-here")
	serve := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"serve", "--model", missing}, args...), &out, &errOut)
		return code, errOut.String()
	}

	locked := t.TempDir()
	holder, err := server.New(context.Background(), server.Config{DataDir: locked})
	require.NoError(t, err)
	defer holder.Shutdown(context.Background())
	code, msg := serve("--data", locked, "--addr", "127.0.0.1:0")
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, "in use by another zimage serve")
	assert.NotContains(t, msg, "no-model-here")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	code, msg = serve("--data", t.TempDir(), "--addr", busy.Addr().String())
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, "address already in use")
	assert.NotContains(t, msg, "no-model-here")

	code, msg = serve("--data", t.TempDir(), "--addr", "127.0.0.1:0", "--role", "worker")
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, "PostgreSQL")
	assert.NotContains(t, msg, "no-model-here")

	// With every check passed, the model is what fails, and the data
	// directory is released for the next try.
	data := t.TempDir()
	code, msg = serve("--data", data, "--addr", "127.0.0.1:0")
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, "no-model-here")
	again, err := server.New(context.Background(), server.Config{DataDir: data})
	require.NoError(t, err, "the lock was released")
	require.NoError(t, again.Shutdown(context.Background()))
}
