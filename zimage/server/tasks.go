package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"image"
	"math/rand/v2"
	"net/http"
	"time"
)

// Task states in the database. The API shows queued and running as
// IN_PROGRESS.
const (
	stateQueued    = "queued"
	stateRunning   = "running"
	stateSucceeded = "succeeded"
	stateFailed    = "failed"
)

// task is a row of zimage_tasks.
type task struct {
	ID          string
	KeyID       string
	Source      string // "api" or "openai"
	Prompt      string
	AspectRatio string
	Width       int
	Height      int
	Seed        int64
	N           int
	Price       int64 // credits reserved for the whole task
	State       string
	Images      int
	Token       string // unguessable; grants read access to the images
	Error       string
	Consumed    int64
	Attempts    int
	JobID       int64
	CreatedAt   int64 // Unix ms
	StartedAt   int64
	FinishedAt  int64
	// ImagesDeletedAt is when retention deleted the images (0 = kept).
	ImagesDeletedAt int64
	Fingerprint     string // of the request body (idempotency.go)
	Waiters         int64  // synchronous requests waiting for it
	CancelAt        int64  // when to cancel it, its waiters gone (Unix ms; 0 = not)
	LoRAs           string // the selected adapters (loraColumn)
}

func (t *task) done() bool {
	return t.State == stateSucceeded || t.State == stateFailed || t.State == stateCancelled
}

// apiStatus is the hosted API's name for the state.
func (t *task) apiStatus() string {
	switch t.State {
	case stateSucceeded:
		return "SUCCESS"
	case stateFailed, stateCancelled:
		return "FAILED"
	}
	return "IN_PROGRESS"
}

const taskColumns = `id, key_id, source, prompt, aspect_ratio, width, height, seed, n, price, state, images, token,
	error_message, consumed, attempts, job_id, created_at, started_at, finished_at, images_deleted_at,
	fingerprint, waiters, cancel_at, loras`

func scanTask(r scanner) (*task, error) {
	var t task
	var w, h, n, images, attempts int64
	err := r.Scan(&t.ID, &t.KeyID, &t.Source, &t.Prompt, &t.AspectRatio, &w, &h, &t.Seed, &n, &t.Price, &t.State,
		&images, &t.Token, &t.Error, &t.Consumed, &attempts, &t.JobID, &t.CreatedAt, &t.StartedAt, &t.FinishedAt, &t.ImagesDeletedAt,
		&t.Fingerprint, &t.Waiters, &t.CancelAt, &t.LoRAs)
	if err != nil {
		return nil, err
	}
	t.Width, t.Height, t.N, t.Images, t.Attempts = int(w), int(h), int(n), int(images), int(attempts)
	return &t, nil
}

// getTask returns a task, or sql.ErrNoRows.
func getTask(ctx context.Context, q dbtx, id string) (*task, error) {
	return scanTask(q.queryRow(ctx, `SELECT `+taskColumns+` FROM zimage_tasks WHERE id = ?`, id))
}

// submit reserves the task's credits, checks the key's rate and the queue's
// bound, and stores and enqueues the task, all in one transaction: either
// the task is queued with its credits held, or nothing changed.
//
// With an Idempotency-Key already held by an earlier request, it changes
// nothing and returns idempotentReplay (see submitOrReplay).
func (s *Server) submit(ctx context.Context, key KeyInfo, req generateRequest, source string, meta submitMeta) (*task, error) {
	if s.eng == nil {
		return nil, errorf(http.StatusServiceUnavailable, "the server is not started yet")
	}
	now := time.Now().UnixMilli()
	seed := req.Seed
	if seed < 0 {
		seed = rand.Int64N(1 << 32)
	}
	t := &task{
		ID: "task_" + randomHex(16), KeyID: key.ID, Source: source, Prompt: req.Prompt, AspectRatio: req.AspectRatio,
		Width: req.Width, Height: req.Height, Seed: seed, N: req.N, Price: s.cfg.imagePrice(req.Width, req.Height) * int64(req.N),
		State: stateQueued, Token: randomHex(24), CreatedAt: now, Fingerprint: meta.fingerprint,
		LoRAs: req.LoRAs,
	}
	if meta.waiting {
		t.Waiters = 1
	}
	jobID, err := s.eng.submit(ctx, t.ID, func(q dbtx) error {
		if meta.idemKey != "" {
			// First: a replay must not be refused for credits or rate.
			if err := claimIdempotencyKey(ctx, q, t, meta); err != nil {
				return err
			}
		}
		// Reserve first: the row lock this takes (PostgreSQL) serializes a
		// key's submissions, which makes the rate count below exact.
		n, err := q.exec(ctx, `UPDATE zimage_keys SET reserved = reserved + ?
			WHERE id = ? AND revoked = 0 AND credits - reserved >= ?`, t.Price, key.ID, t.Price)
		if err != nil {
			return fmt.Errorf("server: reserve credits: %w", err)
		}
		if n == 0 {
			k, err := getKey(ctx, q, key.ID)
			if err != nil || k.Revoked {
				return errorf(http.StatusUnauthorized, "invalid API key")
			}
			return errorf(http.StatusPaymentRequired, "not enough credits: this request costs %d, the balance available is %d",
				t.Price, k.Available())
		}
		if key.RatePerMinute > 0 {
			var count, oldest int64
			err := q.queryRow(ctx, `SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM zimage_tasks
				WHERE key_id = ? AND created_at > ?`, key.ID, now-60_000).Scan(&count, &oldest)
			if err != nil {
				return fmt.Errorf("server: rate limit: %w", err)
			}
			if count >= int64(key.RatePerMinute) {
				wait := (oldest + 60_000 - now + 999) / 1000
				return &apiError{status: http.StatusTooManyRequests, retryAfter: int(max(wait, 1)),
					msg: fmt.Sprintf("rate limit: %d generation requests per minute", key.RatePerMinute)}
			}
		}
		var depth int64
		if err := q.queryRow(ctx, `SELECT COUNT(*) FROM zimage_tasks WHERE state IN (?, ?)`,
			stateQueued, stateRunning).Scan(&depth); err != nil {
			return fmt.Errorf("server: queue depth: %w", err)
		}
		if depth >= int64(s.cfg.MaxQueue) {
			return &apiError{status: http.StatusTooManyRequests, retryAfter: s.metrics.retryAfter(depth, s.cfg.Workers),
				msg: fmt.Sprintf("the queue is full (%d tasks); try again later", depth)}
		}
		_, err = q.exec(ctx, `INSERT INTO zimage_tasks (id, key_id, source, prompt, aspect_ratio, width, height, seed, n,
			price, state, token, created_at, fingerprint, waiters, loras) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.KeyID, t.Source, t.Prompt, t.AspectRatio, int64(t.Width), int64(t.Height), t.Seed, int64(t.N),
			t.Price, t.State, t.Token, t.CreatedAt, t.Fingerprint, t.Waiters, t.LoRAs)
		if err != nil {
			return fmt.Errorf("server: store task: %w", err)
		}
		return insertEdit(ctx, q, t.ID, req.Edit)
	})
	if err != nil {
		return nil, err
	}
	t.JobID = jobID
	s.metrics.submitted.Add(1)
	s.log.Info("task queued", "task", t.ID, "key", key.ID, "size", sizeText(t.Width, t.Height), "n", t.N, "seed", t.Seed)
	return t, nil
}

// runTask is one attempt at a task (the River worker calls it). The outcome
// is written through finish, together with the job's completion. Returning
// an error hands the task back to the queue for another attempt.
func (s *Server) runTask(ctx context.Context, taskID string, attempt int, finish finishFunc) error {
	log := s.log.With("task", taskID, "attempt", attempt)
	t, err := getTask(ctx, s.db.q, taskID)
	if errors.Is(err, sql.ErrNoRows) {
		log.Error("job for an unknown task; dropped")
		return finish(ctx, func(context.Context, dbtx) error { return nil })
	}
	if err != nil {
		return fmt.Errorf("server: load task %s: %w", taskID, err)
	}
	if !t.done() && t.abandonedNow() {
		// Its clients went away while it was queued (and the process that
		// was to cancel it may be gone): cancel it instead of running it.
		if ok, err := s.cancelAbandoned(ctx, t.ID); err != nil {
			return fmt.Errorf("server: cancel task %s: %w", taskID, err)
		} else if ok {
			t.State = stateCancelled
		}
	}
	if t.done() {
		// Already settled (the job's completion was lost after the commit, or
		// a rescuer re-ran it): nothing to do, and nothing to charge again.
		return finish(ctx, func(context.Context, dbtx) error { return nil })
	}
	if attempt > s.cfg.MaxAttempts {
		log.Error("task failed: too many attempts")
		return s.finishFailed(ctx, t, fmt.Sprintf("the task was interrupted %d times; giving up", attempt-1), finish)
	}
	start := time.Now()
	if _, err := s.db.q.exec(ctx, `UPDATE zimage_tasks SET state = ?, started_at = ?, attempts = ? WHERE id = ? AND state IN (?, ?)`,
		stateRunning, start.UnixMilli(), int64(attempt), t.ID, stateQueued, stateRunning); err != nil {
		return fmt.Errorf("server: start task %s: %w", taskID, err)
	}
	s.metrics.queueWait.observe(float64(start.UnixMilli()-t.CreatedAt) / 1000)
	s.metrics.running.Add(1)
	defer s.metrics.running.Add(-1)
	log.Info("task started", "size", sizeText(t.Width, t.Height), "n", t.N)

	// A task whose clients all went away is cancelled (cancelAbandoned):
	// here directly, from another process through the watcher.
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	defer s.trackRunning(t.ID, cancelRun)()
	if s.db.pgPool != nil {
		go s.watchCancel(ctx, t.ID, cancelRun)
	}

	edit, err := loadEdit(ctx, s.db.q, t.ID)
	if err != nil {
		return err
	}
	pngs := make([][]byte, 0, t.N)
	for i := range t.N {
		job := Job{TaskID: t.ID, Index: i, Prompt: t.Prompt, Width: t.Width, Height: t.Height, Seed: t.Seed + int64(i), Steps: s.cfg.Steps,
			LoRAs: parseLoRAColumn(t.LoRAs)}
		edit.apply(&job)
		img, _, err := s.generate(ctx, job)
		var data []byte
		if err == nil {
			data, err = encodePNG(t.ID, i, img)
		}
		if err == nil {
			pngs = append(pngs, data)
			continue
		}
		if errors.Is(context.Cause(ctx), errTaskCancelled) {
			// Already recorded as cancelled (unbilled): complete the job.
			log.Info("generation interrupted: the task was cancelled")
			s.metrics.runTime.observe(time.Since(start).Seconds())
			return finish(ctx, func(context.Context, dbtx) error { return nil })
		}
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Cancelled by shutdown: hand the task back, unbilled.
			log.Warn("task handed back at shutdown")
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = s.db.q.exec(rctx, `UPDATE zimage_tasks SET state = ? WHERE id = ? AND state = ?`, stateQueued, t.ID, stateRunning)
			cancel()
			return fmt.Errorf("server: task %s interrupted: %w", t.ID, ctx.Err())
		}
		msg := err.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = fmt.Sprintf("generation timed out after %s", s.cfg.TaskTimeout)
		}
		log.Error("task failed", "err", err)
		s.metrics.runTime.observe(time.Since(start).Seconds())
		return s.finishFailed(ctx, t, msg, finish)
	}

	// Success: record it, store the images and take the credits in one
	// transaction, at most once (the state guard and the charges table's key
	// make a second settlement a no-op).
	finished := time.Now().UnixMilli()
	err = finish(ctx, func(ctx context.Context, q dbtx) error {
		n, err := q.exec(ctx, `UPDATE zimage_tasks SET state = ?, images = ?, consumed = price, finished_at = ?, error_message = ''
			WHERE id = ? AND state IN (?, ?)`, stateSucceeded, int64(t.N), finished, t.ID, stateQueued, stateRunning)
		if err != nil || n == 0 {
			return err
		}
		if err := s.images.save(ctx, q, t.ID, pngs); err != nil {
			return err
		}
		if err := deleteEdit(ctx, q, t.ID); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO zimage_charges (task_id, key_id, amount, created_at) VALUES (?, ?, ?, ?)`,
			t.ID, t.KeyID, t.Price, finished); err != nil {
			return fmt.Errorf("server: charge task %s: %w", t.ID, err)
		}
		_, err = q.exec(ctx, `UPDATE zimage_keys SET credits = credits - ?, reserved = reserved - ? WHERE id = ?`,
			t.Price, t.Price, t.KeyID)
		return err
	})
	if err != nil {
		log.Error("recording the task's success failed; it will run again", "err", err)
		return fmt.Errorf("server: settle task %s: %w", t.ID, err)
	}
	s.metrics.runTime.observe(time.Since(start).Seconds())
	s.metrics.succeeded.Add(1)
	s.notifyChanged()
	log.Info("task succeeded", "seconds", time.Since(start).Seconds())
	return nil
}

// generate calls the Generator, turning a panic into an error so that one
// bad request cannot take the server down.
func (s *Server) generate(ctx context.Context, job Job) (img image.Image, seed int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("generator panicked: %v", r)
		}
	}()
	img, seed, err = s.cfg.Generator.Generate(ctx, job)
	if err == nil && img == nil {
		err = errors.New("generator returned no image")
	}
	return img, seed, err
}

// finishFailed marks a task FAILED and releases its reservation, unbilled.
func (s *Server) finishFailed(ctx context.Context, t *task, msg string, finish finishFunc) error {
	finished := time.Now().UnixMilli()
	err := finish(ctx, func(ctx context.Context, q dbtx) error {
		n, err := q.exec(ctx, `UPDATE zimage_tasks SET state = ?, error_message = ?, finished_at = ? WHERE id = ? AND state IN (?, ?)`,
			stateFailed, msg, finished, t.ID, stateQueued, stateRunning)
		if err != nil || n == 0 {
			return err
		}
		if err := deleteEdit(ctx, q, t.ID); err != nil {
			return err
		}
		_, err = q.exec(ctx, `UPDATE zimage_keys SET reserved = reserved - ? WHERE id = ?`, t.Price, t.KeyID)
		return err
	})
	if err != nil {
		s.log.Error("recording the task's failure failed; it will run again", "task", t.ID, "err", err)
		return fmt.Errorf("server: fail task %s: %w", t.ID, err)
	}
	s.metrics.failed.Add(1)
	s.notifyChanged()
	return nil
}
