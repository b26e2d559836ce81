package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testGen is a fast, deterministic Generator. A prompt containing "FAIL"
// fails, "PANIC" panics, "BLOCK" waits until released (or cancelled), and
// "SLOW" takes the time slow.
type testGen struct {
	delay   time.Duration
	slow    time.Duration
	release chan struct{} // closed to let BLOCK prompts finish

	mu          sync.Mutex
	calls       map[string]int // task ID → images generated
	started     map[string]int // task ID → generations started
	interrupted map[string]int // task ID → generations ended by their context
}

func newTestGen() *testGen {
	return &testGen{release: make(chan struct{}), calls: map[string]int{}, started: map[string]int{}, interrupted: map[string]int{}}
}

func (g *testGen) Generate(ctx context.Context, job Job) (image.Image, int64, error) {
	g.mu.Lock()
	g.started[job.TaskID]++
	g.mu.Unlock()
	stopped := func() (image.Image, int64, error) {
		g.mu.Lock()
		g.interrupted[job.TaskID]++
		g.mu.Unlock()
		return nil, 0, ctx.Err()
	}
	if strings.Contains(job.Prompt, "SLOW") {
		select {
		case <-time.After(g.slow):
		case <-ctx.Done():
			return stopped()
		}
	}
	if strings.Contains(job.Prompt, "BLOCK") {
		select {
		case <-g.release:
		case <-ctx.Done():
			return stopped()
		}
	}
	if g.delay > 0 {
		select {
		case <-time.After(g.delay):
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	if strings.Contains(job.Prompt, "FAIL") {
		return nil, 0, errors.New("the model could not draw this")
	}
	if strings.Contains(job.Prompt, "PANIC") {
		panic("generator bug")
	}
	g.mu.Lock()
	g.calls[job.TaskID]++
	g.mu.Unlock()
	img := image.NewRGBA(image.Rect(0, 0, job.Width, job.Height))
	c := color.RGBA{uint8(job.Seed), uint8(job.Seed >> 8), uint8(job.Index * 40), 255}
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img, job.Seed, nil
}

// counts returns the generations started, completed and interrupted.
func (g *testGen) counts(id string) (started, done, interrupted int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started[id], g.calls[id], g.interrupted[id]
}

func (g *testGen) callsFor(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[id]
}

// testEnv is a running server on a loopback port with its own data dir.
type testEnv struct {
	t     *testing.T
	srv   *Server
	url   string
	gen   *testGen
	store *Store
	dir   string
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ZIMAGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer starts a server; edit may adjust the config.
func startServer(t *testing.T, dir string, gen *testGen, edit func(*Config)) *testEnv {
	t.Helper()
	return startServerHook(t, dir, gen, edit, nil)
}

// startServerHook is startServer with a hook that may change the server
// between New and Start.
func startServerHook(t *testing.T, dir string, gen *testGen, edit func(*Config), hook func(*Server)) *testEnv {
	t.Helper()
	cfg := Config{
		DataDir: dir, Generator: gen, Resolution: 64, Price: 15,
		PollInterval: 50 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		Logger: testLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx := context.Background()
	srv, err := New(ctx, cfg)
	require.NoError(t, err)
	if hook != nil {
		hook(srv)
	}
	require.NoError(t, srv.Start(ctx))
	e := &testEnv{t: t, srv: srv, url: newHTTPServer(t, srv), gen: gen, dir: dir}
	e.store = &Store{db: srv.db}
	return e
}

// newHTTPServer serves srv on a loopback port until the test ends, then
// shuts srv down.
func newHTTPServer(t *testing.T, srv *Server) string {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		_ = srv.Shutdown(context.Background())
	})
	return ts.URL
}

func newEnv(t *testing.T, edit func(*Config)) *testEnv {
	return startServer(t, t.TempDir(), newTestGen(), edit)
}

// addKey makes a key with credits and a rate limit (0 = none).
func (e *testEnv) addKey(credits int64, rate int) (string, KeyInfo) {
	e.t.Helper()
	key, info, err := e.store.AddKey(context.Background(), "test", credits, rate)
	require.NoError(e.t, err)
	return key, info
}

func (e *testEnv) key(id string) KeyInfo {
	e.t.Helper()
	k, err := e.store.Key(context.Background(), id)
	require.NoError(e.t, err)
	return k
}

// response is a decoded reply.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	Env    struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
}

func (r *response) data(v any) {
	if err := json.Unmarshal(r.Env.Data, v); err != nil {
		panic(fmt.Sprintf("decode data %s: %v", r.Env.Data, err))
	}
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

func do(t testing.TB, method, url, key string, body any) *response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := &response{Status: resp.StatusCode, Header: resp.Header}
	out.Body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(out.Body, &out.Env)
	}
	return out
}

func (e *testEnv) generate(key string, body any) *response {
	return do(e.t, "POST", e.url+"/api/generate", key, body)
}

// submitOK posts a generation and returns its task ID.
func (e *testEnv) submitOK(key, prompt string) string {
	e.t.Helper()
	r := e.generate(key, map[string]any{"prompt": prompt, "aspect_ratio": "1:1"})
	require.Equal(e.t, 200, r.Status, "%s", r.Body)
	var d struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
	}
	r.data(&d)
	require.Equal(e.t, "IN_PROGRESS", d.Status)
	require.True(e.t, strings.HasPrefix(d.TaskID, "task_"), d.TaskID)
	return d.TaskID
}

type statusResp struct {
	Status  string `json:"status"`
	TaskID  string `json:"task_id"`
	Request struct {
		Prompt string `json:"prompt"`
		Size   string `json:"size"`
		Seed   int64  `json:"seed"`
	} `json:"request"`
	Response        []string `json:"response"`
	ConsumedCredits int64    `json:"consumed_credits"`
	CreatedAt       string   `json:"created_at"`
	ErrorMessage    string   `json:"error_message"`
	ImagesExpireAt  string   `json:"images_expire_at"`
	ImagesDeletedAt string   `json:"images_deleted_at"`
}

func (e *testEnv) status(key, id string) (*response, statusResp) {
	r := do(e.t, "GET", e.url+"/api/status?task_id="+id, key, nil)
	var s statusResp
	if r.Status == 200 {
		r.data(&s)
	}
	return r, s
}

// waitDone polls a task until it is no longer IN_PROGRESS.
func (e *testEnv) waitDone(key, id string) statusResp {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, s := e.status(key, id)
		require.Equal(e.t, 200, r.Status, "%s", r.Body)
		if s.Status != "IN_PROGRESS" {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("task %s still IN_PROGRESS after 30s", id)
	return statusResp{}
}

// charges returns how many times a task was charged.
func charges(t testing.TB, q dbtx, taskID string) int64 {
	var n int64
	require.NoError(t, q.queryRow(context.Background(), `SELECT COUNT(*) FROM zimage_charges WHERE task_id = ?`, taskID).Scan(&n))
	return n
}
