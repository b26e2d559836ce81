package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateAndStatus(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(100, 0)

	for _, tc := range []struct{ aspect, size string }{
		{"1:1", "64*64"}, {"4:3", "80*48"}, {"16:9", "80*48"}, {"9:16", "48*80"},
	} {
		r := e.generate(key, map[string]any{"prompt": "a red fox", "aspect_ratio": tc.aspect, "seed": 42})
		require.Equal(t, 200, r.Status, "%s", r.Body)
		assert.Equal(t, 200, r.Env.Code)
		assert.Equal(t, "success", r.Env.Message)
		var d map[string]string
		r.data(&d)
		assert.Equal(t, "IN_PROGRESS", d["status"])
		assert.Len(t, d, 2, "data has task_id and status only")

		s := e.waitDone(key, d["task_id"])
		require.Equal(t, "SUCCESS", s.Status, s.ErrorMessage)
		assert.Equal(t, d["task_id"], s.TaskID)
		assert.Equal(t, "a red fox", s.Request.Prompt)
		assert.Equal(t, tc.size, s.Request.Size)
		assert.Equal(t, int64(42), s.Request.Seed)
		assert.Equal(t, int64(15), s.ConsumedCredits)
		assert.Empty(t, s.ErrorMessage)
		assert.Regexp(t, regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`), s.CreatedAt)
		require.Len(t, s.Response, 1)

		// The URL works without the key (it carries a token) and is a PNG
		// of the requested size.
		img := do(t, "GET", s.Response[0], "", nil)
		require.Equal(t, 200, img.Status, "%s", img.Body)
		assert.Equal(t, "image/png", img.Header.Get("Content-Type"))
		cfg, err := png.DecodeConfig(bytes.NewReader(img.Body))
		require.NoError(t, err)
		w, h, _ := strings.Cut(tc.size, "*")
		assert.Equal(t, w, strconv.Itoa(cfg.Width))
		assert.Equal(t, h, strconv.Itoa(cfg.Height))
	}
	k := e.key(info.ID)
	assert.Equal(t, int64(100-4*15), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
}

func TestRandomSeedAndSizeExtension(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.addKey(100, 0)
	r := e.generate(key, map[string]any{"prompt": "x", "aspect_ratio": "1:1", "seed": -1, "size": "96*128"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var d map[string]string
	r.data(&d)
	s := e.waitDone(key, d["task_id"])
	assert.Equal(t, "96*128", s.Request.Size)
	assert.GreaterOrEqual(t, s.Request.Seed, int64(0), "a random seed is drawn and shown")
}

func TestImageAccess(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.addKey(100, 0)
	other, _ := e.addKey(100, 0)
	id := e.submitOK(key, "cat")
	s := e.waitDone(key, id)
	require.Len(t, s.Response, 1)
	u := s.Response[0]
	bare, _, _ := strings.Cut(u, "?")

	assert.Equal(t, 200, do(t, "GET", u, "", nil).Status, "token")
	assert.Equal(t, 200, do(t, "GET", bare, key, nil).Status, "owner's key")
	assert.Equal(t, 404, do(t, "GET", bare, other, nil).Status, "another key")
	assert.Equal(t, 401, do(t, "GET", bare, "", nil).Status, "nothing")
	assert.Equal(t, 401, do(t, "GET", bare, "zk_wrong", nil).Status, "bad key")
	assert.Equal(t, 404, do(t, "GET", bare+"?token=0123", "", nil).Status, "wrong token")
	assert.Equal(t, 404, do(t, "GET", strings.Replace(u, "/0.png", "/1.png", 1), "", nil).Status, "no such index")
	assert.Equal(t, 404, do(t, "GET", strings.Replace(u, id, "task_nope", 1), "", nil).Status, "no such task")
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(100, 0)
	body := map[string]any{"prompt": "x", "aspect_ratio": "1:1"}
	for name, k := range map[string]string{"missing": "", "wrong": "zk_" + strings.Repeat("0", 48), "no prefix": "hello"} {
		r := e.generate(k, body)
		assert.Equal(t, 401, r.Status, name)
		assert.Equal(t, 401, r.Env.Code, name)
		assert.NotEmpty(t, r.Env.Message, name)
		assert.Equal(t, 401, do(t, "GET", e.url+"/api/status?task_id=task_x", k, nil).Status, name)
		assert.Equal(t, 401, do(t, "POST", e.url+"/v1/images/generations", k, body).Status, name)
	}
	// The scheme is case-insensitive; Basic is not accepted.
	req, _ := http.NewRequest("GET", e.url+"/api/status?task_id=task_x", nil)
	req.Header.Set("Authorization", "bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)
	req.Header.Set("Authorization", "Basic "+key)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)

	require.NoError(t, e.store.RevokeKey(context.Background(), info.ID))
	assert.Equal(t, 401, e.generate(key, body).Status, "revoked")
}

func TestValidation(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(1000, 0)
	long := strings.Repeat("é", MaxPromptChars)
	cases := []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"not json", "{prompt", 400, "invalid JSON"},
		{"empty body", "", 400, "empty"},
		{"array", `[1]`, 400, "JSON object"},
		{"trailing data", `{"prompt":"x","aspect_ratio":"1:1"} {}`, 400, "after"},
		{"missing prompt", map[string]any{"aspect_ratio": "1:1"}, 400, "prompt"},
		{"empty prompt", map[string]any{"prompt": "", "aspect_ratio": "1:1"}, 400, "prompt"},
		{"blank prompt", map[string]any{"prompt": "  \n", "aspect_ratio": "1:1"}, 400, "prompt"},
		{"prompt not string", map[string]any{"prompt": 7, "aspect_ratio": "1:1"}, 400, "prompt"},
		{"prompt too long", map[string]any{"prompt": long + "x", "aspect_ratio": "1:1"}, 400, "1001"},
		{"missing aspect", map[string]any{"prompt": "x"}, 400, "aspect_ratio"},
		{"unknown aspect", map[string]any{"prompt": "x", "aspect_ratio": "2:1"}, 400, "unknown aspect_ratio"},
		{"aspect not string", map[string]any{"prompt": "x", "aspect_ratio": 1}, 400, "aspect_ratio"},
		{"seed not int", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "seed": "7"}, 400, "seed"},
		{"seed fraction", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "seed": 1.5}, 400, "seed"},
		{"seed negative", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "seed": -2}, 400, "seed"},
		{"size bad", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "size": "big"}, 400, "size"},
		{"size not /16", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "size": "100*100"}, 400, "16"},
		{"size huge", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "size": "8192*64"}, 400, "size"},
		{"too large", `{"prompt":"` + strings.Repeat("a", 70<<10) + `","aspect_ratio":"1:1"}`, 413, "larger"},
	}
	for _, tc := range cases {
		r := e.generate(key, tc.body)
		assert.Equal(t, tc.status, r.Status, "%s: %s", tc.name, r.Body)
		assert.Equal(t, tc.status, r.Env.Code, tc.name)
		assert.Contains(t, r.Env.Message, tc.msg, tc.name)
		assert.Equal(t, "null", string(r.Env.Data), tc.name)
	}
	// 1000 characters (not bytes) is fine.
	r := e.generate(key, map[string]any{"prompt": long, "aspect_ratio": "1:1"})
	assert.Equal(t, 200, r.Status, "%s", r.Body)

	assert.Equal(t, 405, do(t, "GET", e.url+"/api/generate", key, nil).Status)
	assert.Equal(t, 405, do(t, "POST", e.url+"/api/status", key, nil).Status)
	r = do(t, "GET", e.url+"/api/nothing", key, nil)
	assert.Equal(t, 404, r.Status)
	assert.Equal(t, 404, r.Env.Code)
	r = do(t, "GET", e.url+"/api/status", key, nil)
	assert.Equal(t, 400, r.Status, "missing task_id")

	// Refused requests reserve nothing.
	e.waitIdle()
	assert.Equal(t, int64(0), e.key(info.ID).Reserved)
}

// waitIdle waits until no task is queued or running.
func (e *testEnv) waitIdle() {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		var n int64
		_ = e.srv.db.q.queryRow(context.Background(), `SELECT COUNT(*) FROM zimage_tasks WHERE state IN ('queued','running')`).Scan(&n)
		return n == 0
	}, 30*time.Second, 10*time.Millisecond)
}

func TestKeyIsolation(t *testing.T) {
	e := newEnv(t, nil)
	a, _ := e.addKey(100, 0)
	b, _ := e.addKey(100, 0)
	id := e.submitOK(a, "mine")
	r, _ := e.status(b, id)
	assert.Equal(t, 404, r.Status)
	assert.Equal(t, 404, r.Env.Code)
	r, _ = e.status(a, "task_doesnotexist")
	assert.Equal(t, 404, r.Status)
	s := e.waitDone(a, id)
	assert.Equal(t, "SUCCESS", s.Status)
	r, _ = e.status(b, id)
	assert.Equal(t, 404, r.Status, "still unknown to b when done")
}

func TestBillingShortAndFailure(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(20, 0)

	// A failed task is not charged and frees its reservation.
	id := e.submitOK(key, "please FAIL")
	s := e.waitDone(key, id)
	assert.Equal(t, "FAILED", s.Status)
	assert.Contains(t, s.ErrorMessage, "could not draw")
	assert.Equal(t, int64(0), s.ConsumedCredits)
	assert.Empty(t, s.Response)
	k := e.key(info.ID)
	assert.Equal(t, int64(20), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)

	// A panicking generator fails the task, not the server.
	id = e.submitOK(key, "PANIC now")
	s = e.waitDone(key, id)
	assert.Equal(t, "FAILED", s.Status)
	assert.Contains(t, s.ErrorMessage, "panicked")

	// While one task holds 15 of the 20 credits, the next is refused at
	// once with 402 and nothing is queued.
	id = e.submitOK(key, "BLOCK until released")
	r := e.generate(key, map[string]any{"prompt": "second", "aspect_ratio": "1:1"})
	assert.Equal(t, 402, r.Status, "%s", r.Body)
	assert.Equal(t, 402, r.Env.Code)
	assert.Contains(t, r.Env.Message, "credits")
	k = e.key(info.ID)
	assert.Equal(t, int64(15), k.Reserved)
	close(e.gen.release)
	s = e.waitDone(key, id)
	assert.Equal(t, "SUCCESS", s.Status)
	k = e.key(info.ID)
	assert.Equal(t, int64(5), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
	assert.Equal(t, 402, e.generate(key, map[string]any{"prompt": "x", "aspect_ratio": "1:1"}).Status)
	assert.Equal(t, int64(1), charges(t, e.srv.db.q, id))

	// Credits added later are usable.
	_, err := e.store.AddCredits(context.Background(), info.ID, 10)
	require.NoError(t, err)
	id = e.submitOK(key, "now it fits")
	assert.Equal(t, "SUCCESS", e.waitDone(key, id).Status)
	assert.Equal(t, int64(0), e.key(info.ID).Credits)
}

func TestNoDoubleChargeOnRetry(t *testing.T) {
	dir := t.TempDir()
	gen := newTestGen()
	e := startServer(t, dir, gen, nil)
	key, info := e.addKey(100, 0)

	// A task interrupted by shutdown is handed back unbilled...
	id := e.submitOK(key, "BLOCK first attempt")
	require.Eventually(t, func() bool {
		tk, err := getTask(context.Background(), e.srv.db.q, id)
		return err == nil && tk.State == stateRunning
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, e.srv.Shutdown(context.Background()))

	// ...and runs again after a restart, charged once.
	close(gen.release)
	e2 := startServer(t, dir, gen, nil)
	s := e2.waitDone(key, id)
	assert.Equal(t, "SUCCESS", s.Status)
	assert.Equal(t, int64(15), s.ConsumedCredits)
	k := e2.key(info.ID)
	assert.Equal(t, int64(85), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
	assert.Equal(t, int64(1), charges(t, e2.srv.db.q, id))
	tk, err := getTask(context.Background(), e2.srv.db.q, id)
	require.NoError(t, err)
	assert.Equal(t, 1, tk.Attempts, "a graceful hand-back does not use up an attempt")

	// A duplicate job for a settled task (a rescuer's re-run, say) changes
	// nothing.
	_, err = e2.srv.eng.submit(context.Background(), id, func(dbtx) error { return nil })
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := e2.srv.eng.jobState(context.Background(), mustTask(t, e2, id).JobID)
		return err == nil && st == "completed"
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, gen.callsFor(id), "not generated again")
	assert.Equal(t, int64(85), e2.key(info.ID).Credits)
	assert.Equal(t, int64(1), charges(t, e2.srv.db.q, id))
}

func mustTask(t *testing.T, e *testEnv, id string) *task {
	tk, err := getTask(context.Background(), e.srv.db.q, id)
	require.NoError(t, err)
	return tk
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	dir := t.TempDir()
	gen := newTestGen()
	e := startServer(t, dir, gen, func(c *Config) { c.MaxAttempts = 1 })
	key, info := e.addKey(100, 0)
	id := e.submitOK(key, "BLOCK forever")
	require.Eventually(t, func() bool { return mustTask(t, e, id).State == stateRunning }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, e.srv.Shutdown(context.Background()))
	// Make it look as if the process had died during the attempt (the
	// subprocess crash test does it for real): the job is left running.
	db, err := openDatabase(context.Background(), dir, "")
	require.NoError(t, err)
	_, err = db.q.exec(context.Background(), `UPDATE river_job SET state = 'running', attempt = attempt + 1`)
	require.NoError(t, err)
	db.close()

	e2 := startServer(t, dir, gen, func(c *Config) { c.MaxAttempts = 1 })
	s := e2.waitDone(key, id)
	assert.Equal(t, "FAILED", s.Status)
	assert.Contains(t, s.ErrorMessage, "interrupted")
	k := e2.key(info.ID)
	assert.Equal(t, int64(100), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	limited, _ := e.addKey(1000, 3)
	free, _ := e.addKey(1000, 0)
	for range 3 {
		e.submitOK(limited, "x")
	}
	r := e.generate(limited, map[string]any{"prompt": "x", "aspect_ratio": "1:1"})
	assert.Equal(t, 429, r.Status, "%s", r.Body)
	assert.Equal(t, 429, r.Env.Code)
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.True(t, ra >= 1 && ra <= 60, "Retry-After %d", ra)
	// Other keys are not affected.
	for range 5 {
		e.submitOK(free, "y")
	}
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxQueue = 2 })
	key, info := e.addKey(1000, 0)
	a := e.submitOK(key, "BLOCK a")
	b := e.submitOK(key, "BLOCK b")
	r := e.generate(key, map[string]any{"prompt": "c", "aspect_ratio": "1:1"})
	assert.Equal(t, 429, r.Status, "%s", r.Body)
	assert.Contains(t, r.Env.Message, "queue is full")
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, ra, 1)
	assert.Equal(t, int64(30), e.key(info.ID).Reserved, "the refused task reserved nothing")
	close(e.gen.release)
	e.waitDone(key, a)
	e.waitDone(key, b)
	e.submitOK(key, "room again")
}

func TestOpenAI(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(100, 0)

	r := do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{
		"model": "z-image-turbo", "prompt": "a lighthouse", "n": 2, "size": "64x96", "response_format": "b64_json", "seed": 5,
	})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var out struct {
		Created int64 `json:"created"`
		Data    []struct {
			URL     string `json:"url"`
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &out))
	assert.InDelta(t, time.Now().Unix(), out.Created, 60)
	require.Len(t, out.Data, 2)
	var first []byte
	for i, d := range out.Data {
		raw, err := base64.StdEncoding.DecodeString(d.B64JSON)
		require.NoError(t, err)
		img, err := png.Decode(bytes.NewReader(raw))
		require.NoError(t, err)
		assert.Equal(t, 64, img.Bounds().Dx())
		assert.Equal(t, 96, img.Bounds().Dy())
		if i == 0 {
			first = raw
		} else {
			assert.NotEqual(t, first, raw, "images of one request use consecutive seeds")
		}
	}
	assert.Equal(t, int64(70), e.key(info.ID).Credits, "n=2 costs twice the price")

	r = do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "a boat"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.NoError(t, json.Unmarshal(r.Body, &out))
	require.Len(t, out.Data, 1)
	img := do(t, "GET", out.Data[0].URL, "", nil)
	require.Equal(t, 200, img.Status)
	cfg, err := png.DecodeConfig(bytes.NewReader(img.Body))
	require.NoError(t, err)
	assert.Equal(t, 64, cfg.Width, "default size is 1:1 at the resolution")

	// Errors use OpenAI's shape with the same status codes.
	var oe struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	for _, tc := range []struct {
		body   any
		status int
	}{
		{map[string]any{"prompt": "x", "n": 0}, 400},
		{map[string]any{"prompt": "x", "n": 99}, 400},
		{map[string]any{"prompt": "x", "response_format": "jpeg"}, 400},
		{map[string]any{"prompt": "x", "size": "65x64"}, 400},
		{map[string]any{"n": 1}, 400},
		{"nope", 400},
	} {
		r := do(t, "POST", e.url+"/v1/images/generations", key, tc.body)
		assert.Equal(t, tc.status, r.Status, "%v: %s", tc.body, r.Body)
		require.NoError(t, json.Unmarshal(r.Body, &oe))
		assert.NotEmpty(t, oe.Error.Message)
		assert.Equal(t, "invalid_request_error", oe.Error.Type)
	}
	r = do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "FAIL please"})
	assert.Equal(t, 500, r.Status)
	assert.Equal(t, int64(55), e.key(info.ID).Credits, "failure not charged")
	r = do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "x", "n": 4})
	assert.Equal(t, 402, r.Status, "%s", r.Body)
	require.NoError(t, json.Unmarshal(r.Body, &oe))
	assert.Equal(t, "insufficient_quota", oe.Error.Type)
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, nil)
	r := do(t, "GET", e.url+"/healthz", "", nil)
	assert.Equal(t, 200, r.Status)
	assert.Contains(t, string(r.Body), `"ok"`)

	key, _ := e.addKey(100, 0)
	e.waitDone(key, e.submitOK(key, "x"))
	e.waitDone(key, e.submitOK(key, "FAIL"))
	r = do(t, "GET", e.url+"/metrics", "", nil)
	require.Equal(t, 200, r.Status)
	body := string(r.Body)
	for _, want := range []string{
		"zimage_queue_depth 0",
		"zimage_tasks_submitted_total 2",
		"zimage_tasks_succeeded_total 1",
		"zimage_tasks_failed_total 1",
		`zimage_task_queue_seconds_bucket{le="+Inf"} 2`,
		"zimage_task_run_seconds_count 2",
		`zimage_http_requests_total{route="/api/generate",code="200"} 2`,
		"zimage_task_images_deleted_total 0",
	} {
		assert.Contains(t, body, want)
	}
}

func TestRoleChecks(t *testing.T) {
	_, err := New(context.Background(), Config{DataDir: t.TempDir(), Role: RoleWorker, Generator: newTestGen()})
	assert.ErrorContains(t, err, "PostgreSQL")
	// Without a Generator, New makes its checks and Start refuses; a
	// generator handed over later (the model loads after the checks) works,
	// and the timeouts derived from the task timeout follow it.
	srv, err := New(context.Background(), Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	assert.ErrorContains(t, srv.Start(context.Background()), "Generator")
	require.NoError(t, srv.SetGenerator(newTestGen(), 42*time.Minute))
	assert.Equal(t, 42*time.Minute, srv.Config().TaskTimeout)
	assert.Equal(t, 43*time.Minute, srv.Config().RescueAfter)
	assert.Equal(t, 43*time.Minute, srv.Config().SyncTimeout)
	require.NoError(t, srv.Start(context.Background()))
	assert.Error(t, srv.SetGenerator(newTestGen(), 0), "after Start")
	require.NoError(t, srv.Shutdown(context.Background()))
	_, err = New(context.Background(), Config{DataDir: t.TempDir(), Generator: newTestGen(), Resolution: 20})
	assert.ErrorContains(t, err, "resolution")
}

func TestDataDirLocked(t *testing.T) {
	e := newEnv(t, nil)
	_, err := New(context.Background(), Config{DataDir: e.dir, Generator: newTestGen()})
	assert.ErrorContains(t, err, "in use")
	// The key store can still be opened alongside the running server.
	st, err := OpenStore(context.Background(), e.dir, "")
	require.NoError(t, err)
	defer st.Close()
	_, _, err = st.AddKey(context.Background(), "side", 5, 0)
	require.NoError(t, err)
}

func TestTaskTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TaskTimeout = 300 * time.Millisecond })
	key, info := e.addKey(100, 0)
	id := e.submitOK(key, "BLOCK past the deadline")
	s := e.waitDone(key, id)
	assert.Equal(t, "FAILED", s.Status)
	assert.Contains(t, s.ErrorMessage, "timed out")
	k := e.key(info.ID)
	assert.Equal(t, int64(100), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
}
