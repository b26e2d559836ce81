package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sdkClient behaves like the official OpenAI SDKs (openai-node 6.x, whose
// client.js this follows): per-attempt timeout, maxRetries retries of
// timeouts, connection errors and 408/409/429/5xx (unless the server sends
// "x-should-retry: false"), exponential backoff from 0.5 s with jitter or
// Retry-After, and the headers X-Stainless-Retry-Count and
// X-Stainless-Timeout. It sends no Idempotency-Key unless one is given.
// TestOpenAINodeSDK runs the real SDK where it is installed.
type sdkClient struct {
	timeout    time.Duration
	maxRetries int
	idemKey    string
	attempts   int // requests sent by the last call
}

type sdkResult struct {
	status int
	body   []byte
	err    error // a timeout or connection error after the last try
}

func (c *sdkClient) post(t testing.TB, url, key string, body any) sdkResult {
	t.Helper()
	payload, err := json.Marshal(body)
	require.NoError(t, err)
	c.attempts = 0
	for retry := 0; ; retry++ {
		c.attempts++
		res, header := c.once(url, key, payload, retry)
		retryable := res.err != nil || res.status == 408 || res.status == 409 || res.status == 429 || res.status >= 500
		if header != nil && header.Get("X-Should-Retry") == "false" {
			retryable = false
		}
		if !retryable || retry == c.maxRetries {
			return res
		}
		wait := time.Duration(math.Min(0.5*math.Pow(2, float64(retry)), 8) * (1 - rand.Float64()*0.25) * float64(time.Second))
		if header != nil {
			if s, err := strconv.ParseFloat(header.Get("Retry-After"), 64); err == nil {
				wait = time.Duration(s * float64(time.Second))
			}
		}
		time.Sleep(wait)
	}
}

func (c *sdkClient) once(url, key string, payload []byte, retry int) (sdkResult, http.Header) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(payload))
	if err != nil {
		return sdkResult{err: err}, nil
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "OpenAI/JS 6.49.0")
	req.Header.Set("X-Stainless-Retry-Count", strconv.Itoa(retry))
	req.Header.Set("X-Stainless-Timeout", strconv.Itoa(int(c.timeout/time.Second)))
	if c.idemKey != "" {
		req.Header.Set("Idempotency-Key", c.idemKey)
	}
	// A fresh connection per attempt, as an aborted fetch leaves none to reuse.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return sdkResult{err: err}, nil
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return sdkResult{err: err}, nil
	}
	return sdkResult{status: resp.StatusCode, body: buf.Bytes()}, resp.Header
}

// tasksOf returns the IDs and states of a key's tasks, oldest first.
func tasksOf(t testing.TB, q dbtx, keyID string) (ids, states []string) {
	t.Helper()
	rows, err := q.query(context.Background(), `SELECT id, state FROM zimage_tasks WHERE key_id = ? ORDER BY created_at`, keyID)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id, st string
		require.NoError(t, rows.Scan(&id, &st))
		ids, states = append(ids, id), append(states, st)
	}
	require.NoError(t, rows.Err())
	return ids, states
}

// TestSDKRetriesOneTask: an OpenAI SDK call whose timeout is shorter than
// the generation, with the SDK's default two retries, is one task: the
// retries attach to it, and the try that is still connected when it
// finishes gets the image, charged once. (Before: three tasks, three
// charges.)
func TestSDKRetriesOneTask(t *testing.T) {
	gen := newTestGen()
	gen.slow = 1500 * time.Millisecond
	e := startServer(t, t.TempDir(), gen, nil)
	key, info := e.addKey(100, 0)

	c := &sdkClient{timeout: 600 * time.Millisecond, maxRetries: 2}
	res := c.post(t, e.url+"/v1/images/generations", key, map[string]any{"prompt": "SLOW lighthouse", "size": "64x64"})
	require.NoError(t, res.err)
	require.Equal(t, 200, res.status, "%s", res.body)
	assert.GreaterOrEqual(t, c.attempts, 2, "the first try timed out")

	ids, states := tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 1, "one task for one SDK call")
	assert.Equal(t, stateSucceeded, states[0])
	started, done, _ := gen.counts(ids[0])
	assert.Equal(t, 1, started, "generated once")
	assert.Equal(t, 1, done)
	assert.Equal(t, int64(1), charges(t, e.srv.db.q, ids[0]))
	k := e.key(info.ID)
	assert.Equal(t, int64(85), k.Credits, "charged once")
	assert.Equal(t, int64(0), k.Reserved)
}

// TestSDKRetriesAllTimeOut: when every try times out, the one task is
// cancelled after the retry grace: its generation is interrupted and
// nothing is charged.
func TestSDKRetriesAllTimeOut(t *testing.T) { checkSDKRetriesAllTimeOut(t, "") }

func TestPostgresSDKRetriesAllTimeOut(t *testing.T) { checkSDKRetriesAllTimeOut(t, postgresURL(t)) }

func checkSDKRetriesAllTimeOut(t *testing.T, dbURL string) {
	gen := newTestGen()
	e := startServer(t, t.TempDir(), gen, func(c *Config) { c.RetryGrace = 1500 * time.Millisecond; c.DatabaseURL = dbURL })
	key, info := e.addKey(100, 0)

	c := &sdkClient{timeout: 300 * time.Millisecond, maxRetries: 2}
	res := c.post(t, e.url+"/v1/images/generations", key, map[string]any{"prompt": "BLOCK forever"})
	require.Error(t, res.err, "the SDK gives up with a timeout")
	assert.Equal(t, 3, c.attempts)

	ids, _ := tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 1, "one task for one SDK call")
	require.Eventually(t, func() bool {
		tk, err := getTask(context.Background(), e.srv.db.q, ids[0])
		return err == nil && tk.State == stateCancelled
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { _, _, intr := gen.counts(ids[0]); return intr == 1 }, 5*time.Second, 10*time.Millisecond,
		"the generation was interrupted")
	_, done, _ := gen.counts(ids[0])
	assert.Equal(t, 0, done)
	assert.Equal(t, int64(0), charges(t, e.srv.db.q, ids[0]))
	k := e.key(info.ID)
	assert.Equal(t, int64(100), k.Credits, "nothing charged")
	assert.Equal(t, int64(0), k.Reserved, "the reservation is released")

	_, s := e.status(key, ids[0])
	assert.Equal(t, "FAILED", s.Status)
	assert.Contains(t, s.ErrorMessage, "not charged")
	assert.Equal(t, int64(0), s.ConsumedCredits)

	// The worker is free again: the next request runs.
	close(gen.release)
	r := do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "after"})
	assert.Equal(t, 200, r.Status, "%s", r.Body)
}

// TestDisconnectCancelsAtOnce: a client that gives no sign of retrying
// (no Idempotency-Key, no SDK headers) and disconnects has its task
// cancelled at once, even with a long retry grace, running or queued.
func TestDisconnectCancelsAtOnce(t *testing.T) {
	gen := newTestGen()
	gen.slow = time.Hour
	e := startServer(t, t.TempDir(), gen, func(c *Config) { c.RetryGrace = time.Hour })
	key, info := e.addKey(100, 0)

	post := func(prompt string) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/images/generations", strings.NewReader(`{"prompt":"`+prompt+`"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		require.True(t, errors.Is(err, context.DeadlineExceeded), "%v %v", err, resp)
	}
	post("SLOW running")
	// An asynchronous task occupies the only worker: the next is still
	// queued when its client goes.
	occupier := e.submitOK(key, "BLOCK occupier")
	post("queued")
	ids, _ := tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 3)
	ids = []string{ids[0], ids[2]}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			tk, err := getTask(context.Background(), e.srv.db.q, id)
			return err == nil && tk.State == stateCancelled
		}, 5*time.Second, 10*time.Millisecond, id)
	}
	_, _, intr := gen.counts(ids[0])
	assert.Equal(t, 1, intr, "the running generation was interrupted")
	close(gen.release)
	assert.Equal(t, "SUCCESS", e.waitDone(key, occupier).Status)
	e.waitIdle()
	started, _, _ := gen.counts(ids[1])
	assert.Equal(t, 0, started, "the queued task never ran")
	k := e.key(info.ID)
	assert.Equal(t, int64(85), k.Credits, "only the occupier was charged")
	assert.Equal(t, int64(0), k.Reserved)
	_, s := e.status(key, ids[1])
	assert.Equal(t, "FAILED", s.Status)
}

// TestIdempotencyKey: the same Idempotency-Key and body give the same task
// (charged once), on both endpoints; another body gets 409 (which the SDKs
// must not retry); keys are per API key.
func TestIdempotencyKey(t *testing.T) { checkIdempotencyKey(t, nil) }

func TestPostgresIdempotencyKey(t *testing.T) {
	dbURL := postgresURL(t)
	checkIdempotencyKey(t, func(c *Config) { c.DatabaseURL = dbURL })
}

func checkIdempotencyKey(t *testing.T, edit func(*Config)) {
	e := newEnv(t, edit)
	key, info := e.addKey(100, 0)
	other, _ := e.addKey(100, 0)

	gen := func(k, idem, body string) *response {
		req, err := http.NewRequest("POST", e.url+"/api/generate", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+k)
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out := &response{Status: resp.StatusCode, Header: resp.Header}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out.Env))
		return out
	}
	taskID := func(r *response) string {
		require.Equal(t, 200, r.Status, r.Env.Message)
		var d struct {
			TaskID string `json:"task_id"`
		}
		r.data(&d)
		return d.TaskID
	}
	body := `{"prompt": "a fox", "aspect_ratio": "1:1"}`
	first := taskID(gen(key, "order-1", body))
	// Same key, same body (other spacing and key order): the same task.
	assert.Equal(t, first, taskID(gen(key, "order-1", `{"aspect_ratio":"1:1","prompt":"a fox"}`)))
	e.waitDone(key, first)
	assert.Equal(t, first, taskID(gen(key, "order-1", body)), "after it finished too")
	assert.Equal(t, int64(85), e.key(info.ID).Credits, "charged once")

	r := gen(key, "order-1", `{"prompt": "a wolf", "aspect_ratio": "1:1"}`)
	assert.Equal(t, 409, r.Status)
	assert.Equal(t, "false", r.Header.Get("X-Should-Retry"))
	assert.Contains(t, r.Env.Message, "different request body")

	assert.NotEqual(t, first, taskID(gen(other, "order-1", body)), "keys are per API key")
	assert.NotEqual(t, first, taskID(gen(key, "order-2", body)))
	assert.NotEqual(t, first, taskID(gen(key, "", body)))
	assert.Equal(t, 400, gen(key, strings.Repeat("k", 300), body).Status)

	// The OpenAI endpoint: the same images again, charged once.
	oa := func(idem string) []byte {
		req, err := http.NewRequest("POST", e.url+"/v1/images/generations",
			strings.NewReader(`{"prompt":"a heron","response_format":"b64_json"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Idempotency-Key", idem)
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var buf bytes.Buffer
		_, err = buf.ReadFrom(resp.Body)
		require.NoError(t, err)
		return buf.Bytes()
	}
	e.waitIdle()
	before := e.key(info.ID).Credits
	a := oa("heron")
	assert.Equal(t, a, oa("heron"), "the same result")
	assert.Equal(t, before-15, e.key(info.ID).Credits, "charged once")
	ids, _ := tasksOf(t, e.srv.db.q, info.ID)
	assert.Len(t, ids, 4)
}

// TestIdempotencyKeyAfterCancel: a key whose task was cancelled (its client
// went away, nothing charged) starts a new task when the request comes
// again after the grace.
func TestIdempotencyKeyAfterCancel(t *testing.T) {
	gen := newTestGen()
	e := startServer(t, t.TempDir(), gen, func(c *Config) { c.RetryGrace = 200 * time.Millisecond })
	key, info := e.addKey(100, 0)
	c := &sdkClient{timeout: 300 * time.Millisecond, idemKey: "k1"}
	res := c.post(t, e.url+"/v1/images/generations", key, map[string]any{"prompt": "BLOCK x"})
	require.Error(t, res.err)
	ids, _ := tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 1)
	require.Eventually(t, func() bool {
		tk, err := getTask(context.Background(), e.srv.db.q, ids[0])
		return err == nil && tk.State == stateCancelled
	}, 5*time.Second, 10*time.Millisecond)
	close(gen.release)
	c.timeout = 30 * time.Second
	res = c.post(t, e.url+"/v1/images/generations", key, map[string]any{"prompt": "BLOCK x"})
	require.NoError(t, res.err)
	require.Equal(t, 200, res.status, "%s", res.body)
	ids, states := tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 2)
	assert.Equal(t, []string{stateCancelled, stateSucceeded}, states)
	assert.Equal(t, int64(85), e.key(info.ID).Credits)
}

func TestFingerprint(t *testing.T) {
	a := fingerprint("api", []byte(`{"prompt":"x","seed":1}`))
	assert.Equal(t, a, fingerprint("api", []byte(" {\"seed\": 1, \"prompt\": \"x\"}\n")))
	assert.NotEqual(t, a, fingerprint("openai", []byte(`{"prompt":"x","seed":1}`)))
	assert.NotEqual(t, a, fingerprint("api", []byte(`{"prompt":"x","seed":1.0}`)))
	assert.NotEqual(t, a, fingerprint("api", []byte(`{"prompt":"x","seed":1,"lora":"y"}`)))
	assert.NotEqual(t, fingerprint("api", []byte("--multipart a")), fingerprint("api", []byte("--multipart b")))
}

// TestPostgresCancelAcrossProcesses: the API process cancels a task whose
// client went away while a worker process runs it; the worker notices
// (it watches the row) and stops the generation, and nothing is charged.
func TestPostgresCancelAcrossProcesses(t *testing.T) {
	dbURL := postgresURL(t)
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	e := startServer(t, t.TempDir(), nil, func(c *Config) {
		c.DatabaseURL, c.Role, c.RetryGrace = dbURL, RoleAPI, 300*time.Millisecond
	})
	key, info := e.addKey(100, 0)
	logPath := filepath.Join(t.TempDir(), "exec.log")
	startProc(t, "--role", "worker", "--database", dbURL, "--data", t.TempDir(), "--delay", "2m", "--log", logPath)

	// The client leaves once the worker has started the task.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/images/generations", strings.NewReader(`{"prompt":"slow"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Stainless-Retry-Count", "0")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var id string
	require.Eventually(t, func() bool {
		ids, states := tasksOf(t, e.srv.db.q, info.ID)
		if len(ids) == 1 && states[0] == stateRunning {
			id = ids[0]
			return true
		}
		return false
	}, 30*time.Second, 20*time.Millisecond)
	cancel()
	<-done
	require.Eventually(t, func() bool {
		tk := mustTask(t, e, id)
		st, err := e.srv.eng.jobState(context.Background(), tk.JobID)
		return tk.State == stateCancelled && err == nil && (st == "completed" || st == "")
	}, 20*time.Second, 50*time.Millisecond, "the worker stopped the generation and completed the job")
	perTask, _ := execLog(t, logPath)
	assert.Equal(t, 0, perTask[id], "no image was made")
	k := e.key(info.ID)
	assert.Equal(t, int64(100), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
}

// TestSDKRetryAfterDelivery: an SDK retry is matched only with a task whose
// outcome no client received: after a call that got its image, a retry
// with the same body (its first try got no task, e.g. a 429) starts a new one.
func TestSDKRetryAfterDelivery(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(100, 0)
	c := &sdkClient{timeout: 30 * time.Second, maxRetries: 2}
	body := map[string]any{"prompt": "a lighthouse"}
	res := c.post(t, e.url+"/v1/images/generations", key, body)
	require.Equal(t, 200, res.status, "%s", res.body)
	r, _ := c.once(e.url+"/v1/images/generations", key, mustJSON(t, body), 1)
	require.Equal(t, 200, r.status, "%s", r.body)
	ids, _ := tasksOf(t, e.srv.db.q, info.ID)
	assert.Len(t, ids, 2)
	assert.Equal(t, int64(70), e.key(info.ID).Credits)
}

// TestFinishedThenGone: a task that finished before its client went away
// is charged once and not cancelled.
func TestFinishedThenGone(t *testing.T) {
	e := newEnv(t, nil)
	key, info := e.addKey(100, 0)
	id := e.submitOK(key, "done first")
	require.Equal(t, "SUCCESS", e.waitDone(key, id).Status)
	ok, err := e.srv.attach(context.Background(), id)
	require.NoError(t, err)
	require.True(t, ok)
	e.srv.leave(id, true, 0)
	tk := mustTask(t, e, id)
	assert.Equal(t, stateSucceeded, tk.State)
	assert.Equal(t, int64(0), tk.CancelAt)
	cancelled, err := e.srv.cancelAbandoned(context.Background(), id)
	require.NoError(t, err)
	assert.False(t, cancelled)
	assert.Equal(t, int64(1), charges(t, e.srv.db.q, id))
	assert.Equal(t, int64(85), e.key(info.ID).Credits)
}
