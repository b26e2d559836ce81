package server

// Idempotent submissions and abandoned synchronous requests.
//
// A generation is billed only when someone can receive it. Three mechanisms
// make that hold when clients time out and retry:
//
//   - Idempotency-Key (both generation endpoints): the first request with a
//     key stores (API key, Idempotency-Key) → (body fingerprint, task) for
//     24 h. A request with the same key and body gets the same task (and so
//     the same result, charged once); a different body gets 409.
//   - OpenAI SDK retries: the official SDKs send no Idempotency-Key, but mark
//     their retries with X-Stainless-Retry-Count ≥ 1. Such a retry attaches
//     to the latest task of the same API key with the same body fingerprint
//     created within the SDK call's span (X-Stainless-Timeout per attempt).
//   - Disconnects: a synchronous request counts as a waiter of its task.
//     When the last waiter's client goes away, the task is cancelled —
//     unbilled, its reservation released, its generation interrupted — at
//     once, or after Config.RetryGrace when the client may retry (it sent an
//     Idempotency-Key or an SDK retry header), so that the retry can attach.
//     A task that finished before that is charged once, as usual.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// idempotencyTTL is how long an Idempotency-Key keeps its task.
	idempotencyTTL = 24 * time.Hour
	// maxIdempotencyKey is the longest Idempotency-Key accepted.
	maxIdempotencyKey = 255
)

// stateCancelled is a task whose clients all went away before it finished:
// never charged. The API reports it as FAILED.
const stateCancelled = "cancelled"

// cancelledMessage is the error message of a cancelled task.
const cancelledMessage = "cancelled: the client disconnected before the image was ready (not charged)"

// errTaskCancelled is the cause of a generation interrupted because its
// task was cancelled.
var errTaskCancelled = errors.New("server: task cancelled: its clients went away")

// submitMeta is what a generation request says about retries, beside its
// body.
type submitMeta struct {
	fingerprint string        // endpoint + canonical body, hashed
	idemKey     string        // Idempotency-Key; "" = none
	sdk         bool          // sent by an OpenAI (Stainless) SDK, which retries on its own
	sdkRetry    int           // X-Stainless-Retry-Count (0: a first attempt, or not an SDK)
	sdkTimeout  time.Duration // X-Stainless-Timeout: the SDK's per-attempt timeout (0 = unknown)
	waiting     bool          // a synchronous request: it waits for its task
}

// retryable reports whether the client is likely to retry after a
// disconnect, so that cancelling waits for Config.RetryGrace.
func (m submitMeta) retryable() bool { return m.idemKey != "" || m.sdk }

// readSubmitMeta reads the retry headers of a generation request.
func readSubmitMeta(r *http.Request, source string, body []byte, waiting bool) (submitMeta, *apiError) {
	m := submitMeta{fingerprint: fingerprint(source, body), waiting: waiting}
	if v := r.Header.Values("Idempotency-Key"); len(v) > 0 {
		k := strings.TrimSpace(v[0])
		if len(v) > 1 || k == "" || len(k) > maxIdempotencyKey || !printableASCII(k) {
			return m, errorf(http.StatusBadRequest, "header Idempotency-Key must be one value of 1 to %d printable ASCII characters", maxIdempotencyKey)
		}
		m.idemKey = k
	}
	if n, err := strconv.Atoi(r.Header.Get("X-Stainless-Retry-Count")); err == nil && n >= 0 {
		m.sdk, m.sdkRetry = true, min(n, 100)
	}
	if sec, err := strconv.ParseFloat(r.Header.Get("X-Stainless-Timeout"), 64); err == nil && sec > 0 && sec < 7*86400 {
		m.sdkTimeout = time.Duration(sec * float64(time.Second))
	}
	return m, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint identifies a request body for idempotency: the endpoint and
// the JSON with its keys sorted (whitespace and key order do not matter);
// bodies that are not one JSON value are hashed as they are. Every field
// counts, including ones added later.
func fingerprint(source string, body []byte) string {
	canon := body
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil && !dec.More() {
		if b, err := json.Marshal(v); err == nil {
			canon = b
		}
	}
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// idempotentReplay aborts a submission whose Idempotency-Key is taken.
type idempotentReplay struct{}

func (idempotentReplay) Error() string { return "server: idempotency key already used" }

// claimIdempotencyKey records the key for task t inside the submission's
// transaction. It returns idempotentReplay when the key is held by a live
// earlier request: one younger than 24 h whose task was not cancelled (a
// cancelled task was never charged, so its key may start a new one).
func claimIdempotencyKey(ctx context.Context, q dbtx, t *task, m submitMeta) error {
	n, err := q.exec(ctx, `INSERT INTO zimage_idempotency (key_id, idem_key, fingerprint, task_id, created_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (key_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint,
			task_id = excluded.task_id, created_at = excluded.created_at
		WHERE zimage_idempotency.created_at < ? OR (zimage_idempotency.fingerprint = excluded.fingerprint
			AND EXISTS (SELECT 1 FROM zimage_tasks WHERE zimage_tasks.id = zimage_idempotency.task_id AND zimage_tasks.state = ?))`,
		t.KeyID, m.idemKey, m.fingerprint, t.ID, t.CreatedAt, t.CreatedAt-idempotencyTTL.Milliseconds(), stateCancelled)
	if err != nil {
		return fmt.Errorf("server: idempotency key: %w", err)
	}
	if n == 0 {
		return idempotentReplay{}
	}
	return nil
}

// replayIdempotent returns the task that holds an Idempotency-Key, or 409
// when it was used with another body.
func (s *Server) replayIdempotent(ctx context.Context, key KeyInfo, m submitMeta) (*task, error) {
	var fp, taskID string
	err := s.db.q.queryRow(ctx, `SELECT fingerprint, task_id FROM zimage_idempotency WHERE key_id = ? AND idem_key = ?`,
		key.ID, m.idemKey).Scan(&fp, &taskID)
	if err != nil {
		return nil, fmt.Errorf("server: idempotency key: %w", err)
	}
	if fp != m.fingerprint {
		return nil, &apiError{status: http.StatusConflict, noRetry: true,
			msg: "this Idempotency-Key was already used with a different request body (keys are kept 24 h); use a new key"}
	}
	return getTask(ctx, s.db.q, taskID)
}

// findRetried returns the task that an OpenAI SDK retry repeats: the latest
// task of the key with the same fingerprint created within the SDK call's
// span, neither cancelled nor delivered (a delivered outcome ended an
// earlier call: this retry's first try got no task, e.g. a 429). nil when
// there is none.
func (s *Server) findRetried(ctx context.Context, key KeyInfo, m submitMeta) (*task, error) {
	per := m.sdkTimeout
	if per <= 0 {
		per = s.cfg.SyncTimeout
	}
	// Each earlier attempt lasted at most its timeout plus the SDK's backoff
	// (at most 8 s, or a Retry-After it was given).
	span := time.Duration(m.sdkRetry)*(per+10*time.Second) + s.cfg.RetryGrace + 5*time.Second
	span = min(span, idempotencyTTL)
	since := time.Now().Add(-span).UnixMilli()
	t, err := scanTask(s.db.q.queryRow(ctx, `SELECT `+taskColumns+` FROM zimage_tasks
		WHERE key_id = ? AND fingerprint = ? AND created_at >= ? AND state != ? AND delivered = 0
		ORDER BY created_at DESC LIMIT 1`, key.ID, m.fingerprint, since, stateCancelled))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return t, err
}

// attach makes the request a waiter of an existing task (which stops a
// pending cancellation). It reports false when the task was cancelled.
func (s *Server) attach(ctx context.Context, id string) (bool, error) {
	n, err := s.db.q.exec(ctx, `UPDATE zimage_tasks SET waiters = waiters + 1, cancel_at = 0 WHERE id = ? AND state != ?`,
		id, stateCancelled)
	if err != nil {
		return false, fmt.Errorf("server: attach to task %s: %w", id, err)
	}
	return n == 1, nil
}

// leave ends a waiter. When its client went away (gone) and it was the
// last waiter of an unfinished task, the task is cancelled after grace.
func (s *Server) leave(id string, gone bool, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !gone {
		// A finished task's outcome is about to be written to this client.
		if _, err := s.db.q.exec(ctx, `UPDATE zimage_tasks SET waiters = waiters - 1,
			delivered = CASE WHEN state IN (?, ?) THEN 1 ELSE delivered END WHERE id = ?`,
			stateSucceeded, stateFailed, id); err != nil {
			s.log.Error("leave task", "task", id, "err", err)
		}
		return
	}
	cancelAt := time.Now().Add(grace).UnixMilli()
	n, err := s.db.q.exec(ctx, `UPDATE zimage_tasks SET waiters = waiters - 1,
		cancel_at = CASE WHEN waiters <= 1 AND state IN (?, ?) THEN CAST(? AS BIGINT) ELSE cancel_at END
		WHERE id = ?`, stateQueued, stateRunning, cancelAt, id)
	if err != nil {
		s.log.Error("leave task", "task", id, "err", err)
		return
	}
	if n == 1 {
		s.log.Info("client went away", "task", id, "cancel_in", grace)
		s.scheduleCancel(id, grace)
	}
}

// scheduleCancel runs cancelAbandoned for a task after d, unless the server
// shuts down first (the task's cancel_at stays in the database: a worker
// that picks the task up, or watches it, cancels it then).
func (s *Server) scheduleCancel(id string, d time.Duration) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.waiters.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.waiters.Done()
		if d > 0 {
			t := time.NewTimer(d + 10*time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.drained:
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.cancelAbandoned(ctx, id); err != nil {
			s.log.Error("cancel abandoned task", "task", id, "err", err)
		}
	}()
}

// cancelAbandoned cancels a task whose waiters all left and whose grace has
// passed: state cancelled, reservation released, no charge; its generation
// is interrupted if it runs in this process (workers of other processes
// watch the row). A task that finished or got a new waiter is left alone.
func (s *Server) cancelAbandoned(ctx context.Context, id string) (bool, error) {
	now := time.Now().UnixMilli()
	cancelled := false
	err := s.db.inTx(ctx, func(q dbtx) error {
		n, err := q.exec(ctx, `UPDATE zimage_tasks SET state = ?, error_message = ?, finished_at = ?
			WHERE id = ? AND state IN (?, ?) AND waiters <= 0 AND cancel_at != 0 AND cancel_at <= ?`,
			stateCancelled, cancelledMessage, now, id, stateQueued, stateRunning, now)
		if err != nil || n == 0 {
			return err
		}
		cancelled = true
		if err := deleteEdit(ctx, q, id); err != nil {
			return err
		}
		_, err = q.exec(ctx, `UPDATE zimage_keys SET reserved = reserved - (SELECT price FROM zimage_tasks WHERE id = ?)
			WHERE id = (SELECT key_id FROM zimage_tasks WHERE id = ?)`, id, id)
		return err
	})
	if err != nil || !cancelled {
		return false, err
	}
	s.metrics.cancelled.Add(1)
	s.interruptLocal(id)
	s.notifyChanged()
	s.log.Info("task cancelled: its clients went away", "task", id)
	return true, nil
}

// trackRunning registers a running task's cancel function, so that
// cancelAbandoned can interrupt its generation; the returned func
// unregisters it.
func (s *Server) trackRunning(id string, cancel context.CancelCauseFunc) func() {
	s.runMu.Lock()
	s.runningTasks[id] = cancel
	s.runMu.Unlock()
	return func() {
		s.runMu.Lock()
		delete(s.runningTasks, id)
		s.runMu.Unlock()
	}
}

func (s *Server) interruptLocal(id string) {
	s.runMu.Lock()
	cancel := s.runningTasks[id]
	s.runMu.Unlock()
	if cancel != nil {
		cancel(errTaskCancelled)
	}
}

// watchCancel polls a running task's row for cancellation by another
// process (PostgreSQL deployments), and cancels abandoned tasks whose grace
// ran out if the process that was to do it is gone. It returns when ctx ends.
func (s *Server) watchCancel(ctx context.Context, id string, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(max(s.cfg.PollInterval, 200*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var state string
		var waiters, cancelAt int64
		err := s.db.q.queryRow(ctx, `SELECT state, waiters, cancel_at FROM zimage_tasks WHERE id = ?`, id).Scan(&state, &waiters, &cancelAt)
		if err != nil {
			continue
		}
		switch {
		case state == stateCancelled:
			cancel(errTaskCancelled)
			return
		case waiters <= 0 && cancelAt != 0 && cancelAt <= time.Now().UnixMilli():
			if ok, _ := s.cancelAbandoned(ctx, id); ok {
				cancel(errTaskCancelled)
				return
			}
		}
	}
}

// abandonedNow reports whether a task's waiters left and its grace passed.
func (t *task) abandonedNow() bool {
	return t.Waiters <= 0 && t.CancelAt != 0 && t.CancelAt <= time.Now().UnixMilli()
}

// purgeIdempotencyKeys deletes keys older than their 24 h.
func (s *Server) purgeIdempotencyKeys(ctx context.Context) error {
	_, err := s.db.q.exec(ctx, `DELETE FROM zimage_idempotency WHERE created_at < ?`,
		time.Now().Add(-idempotencyTTL).UnixMilli())
	return err
}
