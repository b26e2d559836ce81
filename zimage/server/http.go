package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Handler returns the HTTP API. In the worker role only /healthz and
// /metrics are served.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.handleHealth)
	mux.HandleFunc("/metrics", s.handleMetrics)
	mux.HandleFunc("/api/loras", s.handleLoRAs)
	if s.cfg.Role != RoleWorker {
		mux.HandleFunc("/api/generate", s.handleGenerate)
		mux.HandleFunc("/api/status", s.handleStatus)
		mux.HandleFunc("/api/images/{task}/{file}", s.handleImage)
		mux.HandleFunc("/v1/images/generations", s.handleOpenAI)
		mux.HandleFunc("/v1/models", s.handleModels)
		mux.HandleFunc("/v1/models/{id...}", s.handleModels)
		mux.HandleFunc("/v1/images/edits", s.handleOpenAI)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			writeOpenAIError(w, errorf(http.StatusNotFound, "unknown endpoint %s", r.URL.Path))
			return
		}
		writeError(w, errorf(http.StatusNotFound, "unknown endpoint %s", r.URL.Path))
	})
	return s.observe(mux)
}

// statusWriter remembers the status code for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// observe logs each request, counts it by route and status, and turns a
// handler panic into a 500.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
				if sw.code == 0 {
					writeError(sw, errorf(http.StatusInternalServerError, "internal error"))
				}
			}
			route := routeOf(r.URL.Path)
			s.metrics.request(route, sw.code)
			s.log.Info("http", "method", r.Method, "route", route, "status", sw.code,
				"ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr)
		}()
		next.ServeHTTP(sw, r)
	})
}

// routeOf names a path for metrics without its variable parts.
func routeOf(path string) string {
	switch {
	case path == "/healthz", path == "/metrics", path == "/api/generate", path == "/api/status",
		path == "/v1/images/generations", path == "/v1/models", path == "/v1/images/edits":
		return path
	case strings.HasPrefix(path, "/v1/models/"):
		return "/v1/models/{id}"
	case strings.HasPrefix(path, "/api/images/"):
		return "/api/images"
	}
	return "other"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// asAPIError maps any error to the one the client sees; errors that are not
// the client's fault are reported as a bare 500 (details go to the log).
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errorf(http.StatusInternalServerError, "internal error")
}

func setRetryAfter(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="zimage"`)
	}
	if e.allow != "" {
		w.Header().Set("Allow", e.allow)
	}
	if e.noRetry {
		w.Header().Set("X-Should-Retry", "false")
	}
}

// writeError writes the hosted API's error envelope.
func writeError(w http.ResponseWriter, e *apiError) {
	setRetryAfter(w, e)
	writeJSON(w, e.status, envelope{Code: e.status, Message: e.msg, Data: nil})
}

// writeOpenAIError writes OpenAI's error shape, which its clients parse.
func writeOpenAIError(w http.ResponseWriter, e *apiError) {
	setRetryAfter(w, e)
	typ := "invalid_request_error"
	switch {
	case e.status == http.StatusUnauthorized:
		typ = "authentication_error"
	case e.status == http.StatusPaymentRequired:
		typ = "insufficient_quota"
	case e.status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case e.status >= 500:
		typ = "server_error"
	}
	writeJSON(w, e.status, map[string]any{"error": map[string]any{
		"message": e.msg, "type": typ, "code": e.status,
	}})
}

func (s *Server) logInternal(r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
	}
}

// errorWriter answers with an error in one of the API's shapes (writeError
// or writeOpenAIError).
type errorWriter func(http.ResponseWriter, *apiError)

// fail logs err when it is the server's fault and answers with what the
// client may see of it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, write errorWriter, err error) {
	s.logInternal(r, err)
	write(w, asAPIError(err))
}

// submitPost is the shared front of the generation endpoints: it checks
// the method, authenticates, reads and decodes the body, and queues the
// task, or finds the one that this request repeats (Idempotency-Key, SDK
// retry). A waiting (synchronous) request is a waiter of the task it gets
// and must end with waitTask. When it returns nil it has already answered.
func (s *Server) submitPost(w http.ResponseWriter, r *http.Request, write errorWriter, source string, waiting bool,
	decode func(body []byte) (generateRequest, *apiError)) (*task, submitMeta) {
	if r.Method != http.MethodPost {
		write(w, methodNotAllowed("POST"))
		return nil, submitMeta{}
	}
	key, err := s.auth(r)
	if err != nil {
		s.fail(w, r, write, err)
		return nil, submitMeta{}
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, write, err)
		return nil, submitMeta{}
	}
	meta, ae := readSubmitMeta(r, source, body, waiting)
	if ae != nil {
		write(w, ae)
		return nil, meta
	}
	req, ae := decode(body)
	if ae == nil {
		var ls []LoRA
		ls, ae = s.decodeLoRAs(body)
		req.LoRAs = loraColumn(ls)
	}
	if ae != nil {
		write(w, ae)
		return nil, meta
	}
	if err := s.cfg.checkCaps(req.Width, req.Height); err != nil {
		write(w, errorf(http.StatusBadRequest, "field \"size\": %v", err))
		return nil, meta
	}
	t, err := s.submitOrReplay(r.Context(), key, req, source, meta)
	if err != nil {
		s.fail(w, r, write, err)
		return nil, meta
	}
	return t, meta
}

// submitOrReplay queues a new task, or returns the task that the request
// repeats: the one holding its Idempotency-Key (409 for another body), or
// for an OpenAI SDK retry the one its earlier attempt started. A waiting
// request is attached to the task it gets.
func (s *Server) submitOrReplay(ctx context.Context, key KeyInfo, req generateRequest, source string, meta submitMeta) (*task, error) {
	reuse := func(t *task) (bool, error) {
		if !meta.waiting {
			return true, nil
		}
		return s.attach(ctx, t.ID)
	}
	if meta.idemKey == "" && meta.sdkRetry > 0 {
		prev, err := s.findRetried(ctx, key, meta)
		if err != nil {
			return nil, err
		}
		if prev != nil {
			if ok, err := reuse(prev); err != nil || ok {
				s.log.Info("SDK retry attached to its task", "task", prev.ID, "retry", meta.sdkRetry)
				return prev, err
			}
		}
	}
	for range 3 {
		t, err := s.submit(ctx, key, req, source, meta)
		if !errors.As(err, new(idempotentReplay)) {
			return t, err
		}
		prev, err := s.replayIdempotent(ctx, key, meta)
		if err != nil {
			return nil, err
		}
		if ok, err := reuse(prev); err != nil || ok {
			s.log.Info("idempotent replay", "task", prev.ID)
			return prev, err
		}
		// Cancelled meanwhile: the key may start a new task.
	}
	return nil, &apiError{status: http.StatusConflict, msg: "a request with this Idempotency-Key is being cancelled; retry"}
}

// bearer extracts the token of an "Authorization: Bearer …" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// auth returns the calling key, or a 401 error.
func (s *Server) auth(r *http.Request) (KeyInfo, error) {
	tok := bearer(r)
	if tok == "" {
		return KeyInfo{}, errorf(http.StatusUnauthorized, "missing API key: send \"Authorization: Bearer <key>\"")
	}
	k, ok, err := authenticate(r.Context(), s.db.q, tok)
	if err != nil {
		return KeyInfo{}, err
	}
	if !ok {
		return KeyInfo{}, errorf(http.StatusUnauthorized, "invalid API key")
	}
	return k, nil
}

// readBody reads a request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.bodyLimit(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", limit)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if ae := s.checkBodySize(r, body); ae != nil {
		return nil, ae
	}
	return body, nil
}

// methodNotAllowed is a 405 whose Allow header lists the methods (GET
// implies HEAD).
func methodNotAllowed(allowed string) *apiError {
	e := errorf(http.StatusMethodNotAllowed, "method not allowed; use %s", allowed)
	e.allow = allowed
	if allowed == "GET" {
		e.allow = "GET, HEAD"
	}
	return e
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var one int64
	if err := s.db.q.queryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		s.log.Error("health check", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "database unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "role": string(s.cfg.Role)})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var queued, running int64
	err := s.db.q.queryRow(r.Context(), `SELECT
		COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0)
		FROM zimage_tasks WHERE state IN (?, ?)`, stateQueued, stateRunning, stateQueued, stateRunning).Scan(&queued, &running)
	if err != nil {
		s.log.Error("metrics: queue depth", "err", err)
	}
	var buf bytes.Buffer
	s.metrics.write(&buf, queued, running)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// handleGenerate is POST /api/generate: validate, reserve, queue, answer at
// once with the task ID.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	t, _ := s.submitPost(w, r, writeError, "api", false, func(body []byte) (generateRequest, *apiError) {
		return decodeGenerateRequest(body, s.cfg.Resolution)
	})
	if t == nil {
		return
	}
	writeJSON(w, http.StatusOK, envelope{Code: 200, Message: "success", Data: map[string]any{
		"task_id": t.ID, "status": t.apiStatus(),
	}})
}

// statusData is the "data" of GET /api/status.
type statusData struct {
	Status          string        `json:"status"`
	TaskID          string        `json:"task_id"`
	Request         statusRequest `json:"request"`
	Response        []string      `json:"response"`
	ConsumedCredits int64         `json:"consumed_credits"`
	CreatedAt       string        `json:"created_at"`
	ErrorMessage    string        `json:"error_message"`

	// Extensions, present only with image retention (Config.KeepImages):
	// when the images will be deleted, or when they were (the task stays
	// SUCCESS, "response" is empty and error_message says so).
	ImagesExpireAt  string `json:"images_expire_at,omitempty"`
	ImagesDeletedAt string `json:"images_deleted_at,omitempty"`
}

type statusRequest struct {
	Prompt string `json:"prompt"`
	Size   string `json:"size"`
	Seed   int64  `json:"seed"`
	// LoRAs are the adapters the task ran with (name, scale as applied:
	// the registered default when the request gave none); absent for none.
	LoRAs []LoRA `json:"loras,omitempty"`
}

// handleStatus is GET /api/status?task_id=…; another key's task is unknown.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, methodNotAllowed("GET"))
		return
	}
	key, err := s.auth(r)
	if err != nil {
		s.fail(w, r, writeError, err)
		return
	}
	id := r.URL.Query().Get("task_id")
	if id == "" {
		writeError(w, errorf(http.StatusBadRequest, "query parameter \"task_id\" is required"))
		return
	}
	t, err := getTask(r.Context(), s.db.q, id)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && t.KeyID != key.ID) {
		writeError(w, errorf(http.StatusNotFound, "unknown task %q", id))
		return
	}
	if err != nil {
		s.fail(w, r, writeError, err)
		return
	}
	writeJSON(w, http.StatusOK, envelope{Code: 200, Message: "success", Data: s.statusOf(r, t)})
}

func (s *Server) statusOf(r *http.Request, t *task) statusData {
	d := statusData{
		Status:          t.apiStatus(),
		TaskID:          t.ID,
		Request:         statusRequest{Prompt: t.Prompt, Size: sizeText(t.Width, t.Height), Seed: t.Seed, LoRAs: parseLoRAColumn(t.LoRAs)},
		Response:        s.imageURLs(r, t),
		ConsumedCredits: t.Consumed,
		CreatedAt:       apiTime(t.CreatedAt),
		ErrorMessage:    t.Error,
	}
	switch {
	case t.State != stateSucceeded:
	case t.ImagesDeletedAt != 0:
		d.ImagesDeletedAt = apiTime(t.ImagesDeletedAt)
		d.ErrorMessage = fmt.Sprintf("the images were deleted at %s (UTC): the server keeps images for a limited time", d.ImagesDeletedAt)
	case s.cfg.KeepImages > 0:
		d.ImagesExpireAt = apiTime(t.FinishedAt + s.cfg.KeepImages.Milliseconds())
	}
	return d
}

// apiTime formats Unix milliseconds as the API's "YYYY-MM-DD HH:MM:SS" (UTC).
func apiTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.DateTime)
}

// imageURLs are a finished task's image links (none once retention deleted
// them). Each carries the task's unguessable token, so it works in a
// browser without the API key.
func (s *Server) imageURLs(r *http.Request, t *task) []string {
	urls := []string{}
	if t.State != stateSucceeded || t.ImagesDeletedAt != 0 {
		return urls
	}
	base := s.baseURL(r)
	for i := range t.Images {
		urls = append(urls, fmt.Sprintf("%s/api/images/%s/%d.png?token=%s", base, t.ID, i, t.Token))
	}
	return urls
}

// handleImage serves GET /api/images/{task}/{n}.png to the holder of the
// task's token or of its key. Anything else is "not found", so the URL space
// reveals nothing.
func (s *Server) handleImage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, methodNotAllowed("GET"))
		return
	}
	notFound := errorf(http.StatusNotFound, "unknown image")
	id := r.PathValue("task")
	idx, err := strconv.Atoi(strings.TrimSuffix(r.PathValue("file"), ".png"))
	if err != nil || !strings.HasSuffix(r.PathValue("file"), ".png") || idx < 0 {
		writeError(w, notFound)
		return
	}
	t, err := getTask(r.Context(), s.db.q, id)
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, notFound)
		return
	}
	if err != nil {
		s.fail(w, r, writeError, err)
		return
	}
	allowed := false
	if tok := r.URL.Query().Get("token"); tok != "" {
		allowed = subtle.ConstantTimeCompare([]byte(tok), []byte(t.Token)) == 1
	} else if bearer(r) != "" {
		k, err := s.auth(r)
		if err != nil {
			s.fail(w, r, writeError, err)
			return
		}
		allowed = k.ID == t.KeyID
	} else {
		writeError(w, errorf(http.StatusUnauthorized, "missing API key or image token"))
		return
	}
	if !allowed || t.State != stateSucceeded || idx >= t.Images {
		writeError(w, notFound)
		return
	}
	if t.ImagesDeletedAt != 0 {
		writeError(w, errorf(http.StatusNotFound, "the image was deleted at %s (UTC): the server keeps images for a limited time",
			apiTime(t.ImagesDeletedAt)))
		return
	}
	data, err := s.images.load(r.Context(), t.ID, idx)
	if errors.Is(err, errImageMissing) {
		// Retention may be deleting it right now; otherwise it is a fault.
		s.log.Warn("image missing", "task", t.ID, "index", idx, "err", err)
		writeError(w, notFound)
		return
	}
	if err != nil {
		s.fail(w, r, writeError, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}

// handleOpenAI is POST /v1/images/generations and /v1/images/edits
// (edit.go): OpenAI's request and response shapes, answered when the images
// are ready.
func (s *Server) handleOpenAI(w http.ResponseWriter, r *http.Request) {
	var format string
	t, meta := s.submitPost(w, r, writeOpenAIError, "openai", true, func(body []byte) (generateRequest, *apiError) {
		req, f, ae := s.decodeOpenAIBody(r, body)
		format = f
		return req, ae
	})
	if t == nil {
		return
	}
	grace := time.Duration(0)
	if meta.retryable() {
		grace = s.cfg.RetryGrace
	}
	t, err := s.waitTask(r.Context(), t.ID, grace)
	if err != nil {
		s.fail(w, r, writeOpenAIError, err)
		return
	}
	if t.State == stateCancelled {
		writeOpenAIError(w, errorf(http.StatusConflict, "%s (task %s); send the request again", t.Error, t.ID))
		return
	}
	if t.State == stateFailed {
		writeOpenAIError(w, errorf(http.StatusInternalServerError, "generation failed: %s (task %s)", t.Error, t.ID))
		return
	}
	data := make([]map[string]string, 0, t.Images)
	for i, u := range s.imageURLs(r, t) {
		if format == "url" {
			data = append(data, map[string]string{"url": u})
			continue
		}
		png, err := s.images.load(r.Context(), t.ID, i)
		if err != nil {
			s.logInternal(r, err)
			writeOpenAIError(w, errorf(http.StatusInternalServerError, "internal error"))
			return
		}
		data = append(data, map[string]string{"b64_json": base64.StdEncoding.EncodeToString(png)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"created": t.CreatedAt / 1000, "data": data})
}

// waitTask waits until a task is finished, as one of its waiters. It wakes
// when this process finishes a task and otherwise polls, since another
// process may run it. When the client goes away first (ctx ends), it
// leaves the task, which is cancelled after grace if no other waiter
// remains.
func (s *Server) waitTask(reqCtx context.Context, id string, grace time.Duration) (*task, error) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errorf(http.StatusServiceUnavailable, "the server is shutting down; task %s stays queued", id)
	}
	s.waiters.Add(1)
	s.mu.Unlock()
	defer s.waiters.Done()
	// Runs before Done: the database is still open.
	defer func() { s.leave(id, reqCtx.Err() != nil, grace) }()

	ctx, cancel := context.WithTimeout(reqCtx, s.cfg.SyncTimeout)
	defer cancel()
	poll := time.NewTicker(max(s.cfg.PollInterval, 100*time.Millisecond))
	defer poll.Stop()
	for {
		changed := s.changedChan()
		t, err := getTask(ctx, s.db.q, id)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, err
		}
		if t.done() {
			return t, nil
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-s.drained:
			if t, err := getTask(ctx, s.db.q, id); err == nil && t.done() {
				return t, nil
			}
			return nil, errorf(http.StatusServiceUnavailable, "the server is shutting down; task %s was handed back to the queue", id)
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errorf(http.StatusGatewayTimeout, "the images were not ready in time; task %s is still queued", id)
}
