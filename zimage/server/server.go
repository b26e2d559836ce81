// Package server is the HTTP API of zimage: the hosted "Z Image Turbo API"
// (POST /api/generate, GET /api/status) and OpenAI's images endpoint, with
// API keys, credits, rate limits and a persistent task queue.
//
// Endpoints (all but /healthz, /metrics and token-carrying image links need
// "Authorization: Bearer KEY"):
//
//	POST /api/generate            {"prompt", "aspect_ratio", "seed"?, "size"?} → task_id, at once
//	GET  /api/status?task_id=…    status, request, image URLs, consumed_credits, created_at (UTC)
//	GET  /api/images/{task}/{n}.png?token=…   the image (token from the status URLs, or the key)
//	POST /v1/images/generations   OpenAI shape; waits for the images; url or b64_json
//	GET  /v1/models[/{id}]        the model served, as OpenAI's SDKs expect
//	GET  /healthz, GET /metrics   liveness (database reachable); Prometheus text
//
// Hosted-API errors keep the {code, message, data} envelope with the same
// HTTP status (400, 401, 402, 404, 405, 413, 429 with Retry-After, 500);
// /v1 errors use OpenAI's {"error": {...}} shape with the same statuses.
//
// Tasks, keys and balances live in an embedded SQLite database in the data
// directory (one process), or in PostgreSQL where API and worker processes,
// on any number of machines, share one queue and one store. The images are
// files in the data directory with SQLite, and rows of the database with
// PostgreSQL, so any API process serves the images of any worker. With
// Config.KeepImages, images older than that are deleted: their URLs answer
// 404 and the status (still SUCCESS) says when they went. The queue is
// River (github.com/riverqueue/river) on either. Submitting reserves the price (402 when the balance cannot cover
// it) in the same transaction that stores and enqueues the task. A task's
// outcome, its charge and the completion of its job commit in one
// transaction, so a task is charged at most once and only on success
// (Idempotency-Key and OpenAI SDK retries reuse the task they repeat, and a
// synchronous task whose clients went away is cancelled unbilled: see
// idempotency.go); a
// task whose process died is run again (up to Config.MaxAttempts) or marked
// FAILED unbilled, never lost. With PostgreSQL, a task's images commit in
// that same transaction: a task is never SUCCESS without them.
package server

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Job is one image to generate.
type Job struct {
	TaskID string
	Index  int // image number within the task (OpenAI's n)
	Prompt string
	Width  int
	Height int
	Seed   int64 // always ≥ 0: random seeds are drawn at submission
	Steps  int   // denoising steps (Config.Steps)

	LoRAs []LoRA // adapters to apply, by registered name (loras.go)

	// Image-to-image / inpainting input (edit.go); nil Image for text-to-image.
	Image, Mask image.Image
	Strength    float64 // 0: the pipeline's default
}

// Generator makes images. It must honour ctx: the server cancels it on
// timeout and at shutdown.
type Generator interface {
	Generate(ctx context.Context, job Job) (img image.Image, seed int64, err error)
}

// Role says which parts of the server a process runs.
type Role string

const (
	RoleAll    Role = "all"    // API and workers
	RoleAPI    Role = "api"    // HTTP API only: tasks are queued for other processes
	RoleWorker Role = "worker" // workers only (plus /healthz and /metrics)
)

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	DataDir     string // the embedded database and the images; required unless DatabaseURL is PostgreSQL
	DatabaseURL string // "" = SQLite in DataDir; "postgres://…" = shared PostgreSQL, images included
	Role        Role   // default RoleAll
	Generator   Generator

	Resolution  int   // base size of the aspect ratios; default 1024
	Price       int64 // credits per image (per 1024² image at 8 steps with PriceByPixels); default 15
	MaxQueue    int   // queued + running tasks before 429; default 100
	MaxN        int   // most images per OpenAI request; default 4
	Workers     int   // tasks run at once by this process; default 1
	MaxAttempts int   // tries of a task whose worker died or stopped; default 3

	// PriceByPixels scales the price with the image: an image costs
	// ceil(Price × width×height/1024² × Steps/8) credits (at least 1).
	PriceByPixels bool
	// Steps is the denoising steps of every image; default 8 (Turbo).
	Steps int
	// MaxPixels caps width×height of a request (hosted size and aspect
	// ratio, OpenAI size); MaxWidth and MaxHeight cap each side. 0 = only
	// the API's own limit (4096 a side).
	MaxPixels, MaxWidth, MaxHeight int

	TaskTimeout     time.Duration // one task's time limit; default 10m
	RescueAfter     time.Duration // when a running job of a dead process is retried; default TaskTimeout+1m
	ShutdownTimeout time.Duration // time running tasks get to finish at shutdown; default 30s
	SyncTimeout     time.Duration // how long /v1/images/generations waits; default TaskTimeout+1m
	PollInterval    time.Duration // queue poll interval; default 200ms
	MaxBodyBytes    int64         // request body limit; default 64 KiB

	// RetryGrace is how long a task whose synchronous clients all went away
	// is kept before it is cancelled (unbilled), when the client may retry
	// (it sent an Idempotency-Key or OpenAI SDK retry headers): the retry
	// then attaches to it. Other clients' tasks are cancelled at once.
	// Default 10s (the OpenAI SDKs back off at most 8 s between tries);
	// negative cancels at once.
	RetryGrace time.Duration

	// KeepImages is how long images are kept after their task finished;
	// older ones are deleted (checked every KeepImages/20, between 1 s and
	// 10 min). 0 keeps them forever. With PostgreSQL, any process with it
	// set deletes the old images of all, so give every process the same
	// value (the API process's value is the expiry the status shows).
	KeepImages time.Duration

	// PublicURL is the server's external base URL for image links, e.g.
	// "https://img.example.com". Default: from the request's Host header.
	PublicURL string
	Logger    *slog.Logger // default: discard

	// TrustedProxies are the peers (reverse proxies) whose X-Forwarded-Proto
	// and X-Forwarded-Host build the image links when PublicURL is empty;
	// from anyone else those headers are ignored.
	TrustedProxies []netip.Prefix

	// ModelID is the model's name in GET /v1/models; default DefaultModelID.
	// ModelCreated is its "created" time; default when New ran.
	ModelID      string
	ModelCreated time.Time

	// LoRAs are the adapter names requests may select ("loras" field), with
	// the scale used when a request gives none. The Generator must know
	// the same names (zimage serve registers them with Pipeline.LoadLoRA).
	LoRAs map[string]float32
}

func (c *Config) setDefaults() error {
	if c.Role == "" {
		c.Role = RoleAll
	}
	if c.Role != RoleAll && c.Role != RoleAPI && c.Role != RoleWorker {
		return fmt.Errorf("server: role %q: want all, api or worker", c.Role)
	}
	if c.DataDir == "" && !isPostgresURL(c.DatabaseURL) {
		return errors.New("server: a data directory is required for the embedded database")
	}
	if c.KeepImages < 0 {
		return fmt.Errorf("server: keep-images %s: must not be negative (0 keeps images forever)", c.KeepImages)
	}
	if c.Role != RoleAll && !isPostgresURL(c.DatabaseURL) {
		return fmt.Errorf("server: role %q needs a shared PostgreSQL database (--database postgres://…); the embedded database serves one process", c.Role)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Resolution, 1024)
	if c.Resolution < minSide || c.Resolution > maxSide {
		return fmt.Errorf("server: resolution %d: must be between %d and %d", c.Resolution, minSide, maxSide)
	}
	if c.Price < 0 {
		return fmt.Errorf("server: price %d: must not be negative", c.Price)
	}
	if c.Price == 0 {
		c.Price = 15
	}
	def(&c.Steps, 8)
	if c.Steps > 100 {
		return fmt.Errorf("server: steps %d: at most 100", c.Steps)
	}
	def(&c.MaxPixels, maxSide*maxSide)
	def(&c.MaxWidth, maxSide)
	def(&c.MaxHeight, maxSide)
	if c.MaxPixels < minSide*minSide || c.MaxWidth < minSide || c.MaxHeight < minSide {
		return fmt.Errorf("server: max pixels %d / max size %dx%d: below the smallest image (%dx%d)", c.MaxPixels, c.MaxWidth, c.MaxHeight, minSide, minSide)
	}
	for _, a := range AspectRatios() {
		w, h, _ := SizeFor(a, c.Resolution)
		if err := c.checkCaps(w, h); err != nil {
			return fmt.Errorf("server: resolution %d makes %s requests %dx%d, which the limits refuse (%v): lower the resolution or raise the limit", c.Resolution, a, w, h, err)
		}
	}
	def(&c.MaxQueue, 100)
	def(&c.MaxN, 4)
	def(&c.Workers, 1)
	def(&c.MaxAttempts, 3)
	defDur(&c.TaskTimeout, 10*time.Minute)
	defDur(&c.RescueAfter, c.TaskTimeout+time.Minute)
	if c.RescueAfter < c.TaskTimeout {
		return fmt.Errorf("server: rescue-after %s must not be shorter than the task timeout %s", c.RescueAfter, c.TaskTimeout)
	}
	defDur(&c.ShutdownTimeout, 30*time.Second)
	defDur(&c.SyncTimeout, c.TaskTimeout+time.Minute)
	defDur(&c.PollInterval, 200*time.Millisecond)
	switch {
	case c.RetryGrace == 0:
		c.RetryGrace = 10 * time.Second
	case c.RetryGrace < 0:
		c.RetryGrace = 0
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 10
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.ModelID == "" {
		c.ModelID = DefaultModelID
	}
	if c.ModelCreated.IsZero() {
		c.ModelCreated = time.Now()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server is the API server and, depending on its Role, a queue worker.
type Server struct {
	cfg     Config
	orig    Config // as given to New, before defaults (SetGenerator redoes them)
	log     *slog.Logger
	db      *database
	eng     engine
	images  imageStore
	metrics *metrics
	unlock  func() // releases the data directory lock (SQLite)

	// changed is closed and replaced whenever this process finishes a task,
	// to wake synchronous requests waiting for it.
	mu      sync.Mutex
	changed chan struct{}

	// At shutdown, closing refuses new synchronous waits, drained tells the
	// waiting ones that no more tasks will finish here, and waiters lets the
	// database close only after they are gone.
	closing bool
	drained chan struct{}
	waiters sync.WaitGroup

	// runningTasks are the cancel functions of the tasks running here, by ID.
	runMu        sync.Mutex
	runningTasks map[string]context.CancelCauseFunc

	sweepStop context.CancelFunc // ends the retention sweep at shutdown
	sweepDone chan struct{}

	started  bool
	stopOnce sync.Once
	stopErr  error
}

// New opens the database (creating or upgrading its tables), recovers what
// a previous process left running, and prepares the queue. Call Start to
// begin running tasks, and Shutdown when done.
//
// New makes every check that needs no model (configuration, the data
// directory's lock, the database and its schema): a server that loads a
// model for minutes may pass a nil Config.Generator here and hand the
// generator over with SetGenerator before Start.
func New(ctx context.Context, cfg Config) (*Server, error) {
	orig := cfg
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("server: data directory: %w", err)
		}
	}
	s := &Server{
		cfg:     cfg,
		orig:    orig,
		log:     cfg.Logger,
		metrics: newMetrics(),
		changed: make(chan struct{}),
		drained: make(chan struct{}),
		unlock:  func() {},

		runningTasks: map[string]context.CancelCauseFunc{},
	}
	if !isPostgresURL(cfg.DatabaseURL) {
		// The embedded database belongs to one server process: that is what
		// makes it safe to hand back, at start, the tasks it shows running.
		unlock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		s.unlock = unlock
	}
	db, err := openDatabase(ctx, cfg.DataDir, cfg.DatabaseURL)
	if err != nil {
		s.unlock()
		return nil, err
	}
	s.db = db
	if db.pgPool != nil {
		s.images = &dbImageStore{db: db}
	} else {
		s.images = &fileStore{dir: filepath.Join(cfg.DataDir, "images")}
	}
	if err := migrateRiver(ctx, db, cfg.Logger); err != nil {
		db.close()
		s.unlock()
		return nil, err
	}
	if err := s.purgeIdempotencyKeys(ctx); err != nil {
		s.log.Warn("purging expired idempotency keys", "err", err)
	}
	if db.sqlDB != nil {
		if err := s.recoverOrphans(ctx); err != nil {
			db.close()
			s.unlock()
			return nil, err
		}
	}
	return s, nil
}

// SetGenerator gives a server made without one its Generator, and the task
// timeout when it is known only now (0 keeps Config.TaskTimeout; the
// defaults derived from it follow). Call it before Start.
func (s *Server) SetGenerator(g Generator, taskTimeout time.Duration) error {
	if s.started {
		return errors.New("server: SetGenerator after Start")
	}
	c := s.orig
	c.Generator = g
	if taskTimeout > 0 {
		c.TaskTimeout = taskTimeout
	}
	c.ModelCreated = s.cfg.ModelCreated
	if err := c.setDefaults(); err != nil {
		return err
	}
	s.cfg = c
	return nil
}

// Config returns the server's configuration with its defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// recoverOrphans hands back the jobs that a killed process left running in
// the embedded database. Only one process uses that database (the data
// directory is locked), so none of them can still be running. PostgreSQL
// deployments rely on River's rescuer instead (Config.RescueAfter).
func (s *Server) recoverOrphans(ctx context.Context) (err error) {
	var orphans []string
	defer func() {
		for _, id := range orphans {
			if err == nil {
				s.scheduleCancel(id, s.cfg.RetryGrace)
			}
		}
	}()
	return s.db.inTx(ctx, func(q dbtx) error {
		n, err := q.exec(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running' AND queue = ?`, queueName)
		if err != nil {
			return fmt.Errorf("server: recover running jobs: %w", err)
		}
		if _, err := q.exec(ctx, `UPDATE zimage_tasks SET state = ? WHERE state = ?`, stateQueued, stateRunning); err != nil {
			return fmt.Errorf("server: recover running tasks: %w", err)
		}
		// The synchronous requests that waited died with the process: their
		// tasks are cancelled unless a retry attaches within the grace.
		rows, err := q.query(ctx, `SELECT id FROM zimage_tasks WHERE state = ? AND waiters > 0`, stateQueued)
		if err != nil {
			return fmt.Errorf("server: recover waiters: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err == nil {
				orphans = append(orphans, id)
			}
		}
		rows.Close()
		if _, err := q.exec(ctx, `UPDATE zimage_tasks SET waiters = 0, cancel_at = ? WHERE state = ? AND waiters > 0`,
			time.Now().Add(s.cfg.RetryGrace).UnixMilli(), stateQueued); err != nil {
			return fmt.Errorf("server: recover waiters: %w", err)
		}
		if n > 0 {
			s.log.Warn("tasks interrupted by the previous process are queued again", "tasks", n)
		}
		return nil
	})
}

// Start starts the queue client; in the worker roles it begins running
// tasks. It returns once started.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.Role != RoleAPI && s.cfg.Generator == nil {
		return errors.New("server: a Generator is required to run tasks (Config.Generator or SetGenerator)")
	}
	eng, err := newEngine(ctx, s.db, engineConfig{
		work:            s.cfg.Role != RoleAPI,
		workers:         s.cfg.Workers,
		taskTimeout:     s.cfg.TaskTimeout,
		rescueAfter:     s.cfg.RescueAfter,
		softStopTimeout: s.cfg.ShutdownTimeout,
		pollInterval:    s.cfg.PollInterval,
		logger:          s.cfg.Logger,
	}, s)
	if err != nil {
		return err
	}
	s.eng = eng
	// River stops when its start context ends; Shutdown stops it instead.
	if err := s.eng.start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("server: start queue: %w", err)
	}
	s.started = true
	if s.cfg.KeepImages > 0 {
		sweepCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		s.sweepStop, s.sweepDone = cancel, make(chan struct{})
		go func() {
			defer close(s.sweepDone)
			s.sweepLoop(sweepCtx, sweepInterval(s.cfg.KeepImages))
		}()
	}
	s.log.Info("server started", "role", s.cfg.Role, "database", s.db.engine,
		"resolution", s.cfg.Resolution, "price", s.cfg.Price, "max_queue", s.cfg.MaxQueue,
		"keep_images", keepText(s.cfg.KeepImages))
	return nil
}

// Shutdown stops taking tasks from the queue and waits for running ones to
// finish; after Config.ShutdownTimeout they are cancelled and handed back to
// the queue (another process, or this one after a restart, runs them). Then
// it closes the database. The HTTP side is the caller's (see Serve).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		if s.started {
			stopCtx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout+30*time.Second)
			if err := s.eng.stop(stopCtx); err != nil {
				s.stopErr = fmt.Errorf("server: stop queue: %w", err)
			}
			cancel()
		}
		if s.sweepStop != nil {
			s.sweepStop()
			<-s.sweepDone
		}
		s.mu.Lock()
		s.closing = true
		close(s.drained)
		s.mu.Unlock()
		s.waiters.Wait()
		s.db.close()
		s.unlock()
		s.log.Info("server stopped")
	})
	return s.stopErr
}

// Serve runs the server on ln until ctx ends, then shuts down gracefully:
// it stops accepting connections, lets requests and running tasks finish
// (up to Config.ShutdownTimeout), and hands the rest back to the queue.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Start(ctx); err != nil {
		_ = s.Shutdown(context.Background())
		return err
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.SyncTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("listening", "addr", ln.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down")
	// HTTP and queue stop together: a synchronous request may be waiting for
	// a task that a worker of this process is finishing.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(hctx); err != nil {
			_ = hs.Close()
		}
	}()
	err := s.Shutdown(context.Background())
	wg.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

func keepText(d time.Duration) string {
	if d <= 0 {
		return "forever"
	}
	return d.String()
}

// notifyChanged wakes the waiters of synchronous requests.
func (s *Server) notifyChanged() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) changedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}
