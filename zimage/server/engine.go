package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// queueName is the River queue that generation tasks go to.
const queueName = "zimage"

// taskArgs is the River job of one task. It carries only the task ID: the
// task row holds the request, and is what the API reads.
type taskArgs struct {
	TaskID string `json:"task_id"`
}

func (taskArgs) Kind() string { return "zimage_generate" }

// finishFunc runs fn in a transaction that also marks the River job
// completed, so a task's outcome (and its charge) and the job's completion
// commit together or not at all.
// fn gets a context that outlives the job's own (which may have expired).
type finishFunc func(ctx context.Context, fn func(ctx context.Context, q dbtx) error) error

// taskRunner does the work of one attempt at a task.
type taskRunner interface {
	runTask(ctx context.Context, taskID string, attempt int, finish finishFunc) error
}

// engine is the job queue, River, with its generic transaction type hidden
// so the rest of the server is written once for SQLite and PostgreSQL.
type engine interface {
	// submit runs fn and inserts the task's job in one transaction, and
	// returns the job's ID.
	submit(ctx context.Context, taskID string, fn func(q dbtx) error) (int64, error)
	start(ctx context.Context) error
	// stop stops fetching jobs and waits for running ones; after the soft
	// stop timeout their contexts are cancelled and they are handed back.
	stop(ctx context.Context) error
	// jobState returns the River state of a job ("" when it no longer exists).
	jobState(ctx context.Context, id int64) (string, error)
}

// engineConfig is what newEngine needs from the server's Config.
type engineConfig struct {
	work            bool // this process runs tasks
	workers         int
	taskTimeout     time.Duration
	rescueAfter     time.Duration
	softStopTimeout time.Duration
	pollInterval    time.Duration
	logger          *slog.Logger
}

func newEngine(ctx context.Context, db *database, cfg engineConfig, runner taskRunner) (engine, error) {
	if db.sqlDB != nil {
		sqlDB := db.sqlDB
		return buildEngine[*sql.Tx, *riversqlite.Driver](ctx, db, riversqlite.New(sqlDB), cfg, runner,
			func(ctx context.Context) (*sql.Tx, dbtx, error) {
				tx, err := sqlDB.BeginTx(ctx, nil)
				return tx, sqlQ{tx}, err
			},
			func(ctx context.Context, tx *sql.Tx) error { return tx.Commit() },
			func(tx *sql.Tx) { _ = tx.Rollback() })
	}
	pool := db.pgPool
	return buildEngine[pgx.Tx, *riverpgxv5.Driver](ctx, db, riverpgxv5.New(pool), cfg, runner,
		func(ctx context.Context) (pgx.Tx, dbtx, error) {
			tx, err := pool.Begin(ctx)
			return tx, pgxQ{tx}, err
		},
		func(ctx context.Context, tx pgx.Tx) error { return tx.Commit(ctx) },
		func(tx pgx.Tx) { _ = tx.Rollback(context.Background()) })
}

// migrateRiver brings River's own tables up to date. New runs it, so that
// a database that cannot be used is found before the model loads; the
// client itself is built at Start, when the timeouts are final.
func migrateRiver(ctx context.Context, db *database, logger *slog.Logger) error {
	var err error
	if db.sqlDB != nil {
		err = runRiverMigrations[*sql.Tx](ctx, db, riversqlite.New(db.sqlDB), logger)
	} else {
		err = runRiverMigrations[pgx.Tx](ctx, db, riverpgxv5.New(db.pgPool), logger)
	}
	if err != nil {
		return fmt.Errorf("server: river migrations: %w", err)
	}
	return nil
}

func runRiverMigrations[TTx any](ctx context.Context, db *database, driver riverdriver.Driver[TTx], logger *slog.Logger) error {
	migrator, err := rivermigrate.New[TTx](driver, &rivermigrate.Config{Logger: quietLogger(logger)})
	if err != nil {
		return err
	}
	return db.withMigrationLock(ctx, func() error {
		_, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
		return err
	})
}

// riverEngine is engine for one River driver.
type riverEngine[TTx any, D riverdriver.Driver[TTx]] struct {
	client   *river.Client[TTx]
	work     bool // started only when it runs tasks: an API-only client just inserts
	begin    func(context.Context) (TTx, dbtx, error)
	commit   func(context.Context, TTx) error
	rollback func(TTx)
}

func buildEngine[TTx any, D riverdriver.Driver[TTx]](_ context.Context, _ *database, driver D, cfg engineConfig, runner taskRunner,
	begin func(context.Context) (TTx, dbtx, error), commit func(context.Context, TTx) error, rollback func(TTx),
) (engine, error) {
	e := &riverEngine[TTx, D]{work: cfg.work, begin: begin, commit: commit, rollback: rollback}

	rc := &river.Config{
		Logger:               quietLogger(cfg.logger),
		JobTimeout:           cfg.taskTimeout,
		RescueStuckJobsAfter: cfg.rescueAfter,
		SoftStopTimeout:      cfg.softStopTimeout,
		FetchPollInterval:    cfg.pollInterval,
		// A short cooldown lets a freed worker take the next queued task at
		// once (River's 100 ms default caps a busy queue near 10 tasks/s per
		// worker slot, which matters only for fast generators and tests).
		FetchCooldown: min(cfg.pollInterval, 5*time.Millisecond),
		// The server bounds attempts itself (Config.MaxAttempts) so that a
		// task always ends in a state the API can report; River's own limit
		// is only a backstop.
		MaxAttempts: 1000,
	}
	if cfg.work {
		workers := river.NewWorkers()
		if err := river.AddWorkerSafely(workers, &taskWorker[TTx, D]{e: e, runner: runner}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		rc.Workers = workers
		rc.Queues = map[string]river.QueueConfig{queueName: {MaxWorkers: cfg.workers}}
	}
	client, err := river.NewClient[TTx](driver, rc)
	if err != nil {
		return nil, fmt.Errorf("server: river: %w", err)
	}
	e.client = client
	return e, nil
}

func (e *riverEngine[TTx, D]) submit(ctx context.Context, taskID string, fn func(q dbtx) error) (int64, error) {
	tx, q, err := e.begin(ctx)
	if err != nil {
		return 0, err
	}
	if err := fn(q); err != nil {
		e.rollback(tx)
		return 0, err
	}
	res, err := e.client.InsertTx(ctx, tx, taskArgs{TaskID: taskID}, &river.InsertOpts{Queue: queueName})
	if err != nil {
		e.rollback(tx)
		return 0, fmt.Errorf("server: enqueue: %w", err)
	}
	if _, err := q.exec(ctx, `UPDATE zimage_tasks SET job_id = ? WHERE id = ?`, res.Job.ID, taskID); err != nil {
		e.rollback(tx)
		return 0, err
	}
	if err := e.commit(ctx, tx); err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

func (e *riverEngine[TTx, D]) start(ctx context.Context) error {
	if !e.work {
		return nil
	}
	return e.client.Start(ctx)
}

func (e *riverEngine[TTx, D]) stop(ctx context.Context) error {
	if !e.work {
		return nil
	}
	return e.client.Stop(ctx)
}

func (e *riverEngine[TTx, D]) jobState(ctx context.Context, id int64) (string, error) {
	job, err := e.client.JobGet(ctx, id)
	if errors.Is(err, river.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(job.State), nil
}

// taskWorker is the River worker for taskArgs.
type taskWorker[TTx any, D riverdriver.Driver[TTx]] struct {
	river.WorkerDefaults[taskArgs]
	e      *riverEngine[TTx, D]
	runner taskRunner
}

func (w *taskWorker[TTx, D]) Work(ctx context.Context, job *river.Job[taskArgs]) error {
	finish := func(ctx context.Context, fn func(ctx context.Context, q dbtx) error) error {
		// The outcome is recorded even if the job's context is being
		// cancelled right now: the work is done, and losing it would mean
		// running (and charging for) the task again.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		tx, q, err := w.e.begin(ctx)
		if err != nil {
			return err
		}
		if err := fn(ctx, q); err != nil {
			w.e.rollback(tx)
			return err
		}
		if _, err := river.JobCompleteTx[D](ctx, tx, job); err != nil {
			w.e.rollback(tx)
			return fmt.Errorf("server: complete job %d: %w", job.ID, err)
		}
		return w.e.commit(ctx, tx)
	}
	return w.runner.runTask(ctx, job.Args.TaskID, job.Attempt, finish)
}

// NextRetry runs a handed-back or failed attempt again soon, with a short
// backoff so that a persistent database error does not spin.
func (w *taskWorker[TTx, D]) NextRetry(job *river.Job[taskArgs]) time.Time {
	return time.Now().Add(time.Duration(job.Attempt-1) * time.Second)
}

// quietLogger passes River's warnings and errors on and drops its chatter.
func quietLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{h: l.Handler(), min: slog.LevelWarn})
}

type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}
