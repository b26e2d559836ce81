package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // the cgo-free SQLite driver, registered as "sqlite"
)

const (
	engineSQLite   = "sqlite"
	enginePostgres = "postgres"

	sqliteFile = "zimage.db"
)

// database is an open store: the embedded SQLite file in the data directory,
// or a PostgreSQL pool. Exactly one of sqlDB and pgPool is set.
type database struct {
	engine string
	q      dbtx // the pool, outside any transaction
	sqlDB  *sql.DB
	pgPool *pgxpool.Pool
}

// isPostgresURL reports whether url names a PostgreSQL database.
func isPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// openDatabase opens the store named by databaseURL ("" = SQLite file in
// dataDir) and brings the server's own tables up to date.
func openDatabase(ctx context.Context, dataDir, databaseURL string) (*database, error) {
	var d *database
	switch {
	case databaseURL == "" || databaseURL == "sqlite":
		if dataDir == "" {
			return nil, errors.New("server: a data directory is needed for the embedded database")
		}
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return nil, fmt.Errorf("server: data directory: %w", err)
		}
		path := filepath.Join(dataDir, sqliteFile)
		// WAL lets the keys command read while the server writes; busy_timeout
		// makes the two processes wait for each other instead of failing;
		// _txlock=immediate takes the write lock at BEGIN so a transaction
		// never has to upgrade a read lock (which SQLite can refuse at once).
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
			"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("server: open %s: %w", path, err)
		}
		// One connection, as River's SQLite driver recommends: SQLite has a
		// single writer anyway, and this rules out SQLITE_BUSY inside the process.
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("server: open %s: %w", path, err)
		}
		d = &database{engine: engineSQLite, q: sqlQ{db}, sqlDB: db}
	case isPostgresURL(databaseURL):
		cfg, err := pgxpool.ParseConfig(databaseURL)
		if err != nil {
			return nil, fmt.Errorf("server: --database: %w", err)
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("server: connect to PostgreSQL: %w", err)
		}
		pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = pool.Ping(pingCtx)
		cancel()
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("server: connect to PostgreSQL: %w", err)
		}
		d = &database{engine: enginePostgres, q: pgxQ{pool}, pgPool: pool}
	default:
		return nil, fmt.Errorf("server: --database %q: want postgres://… or empty for the embedded SQLite", redactURL(databaseURL))
	}
	if err := d.withMigrationLock(ctx, func() error { return migrateApp(ctx, d) }); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// redactURL hides a password in a database URL for error messages.
func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "…@" + u[i+1:]
		}
	}
	return u
}

// inTx runs fn in a transaction, committing when it returns nil.
func (d *database) inTx(ctx context.Context, fn func(q dbtx) error) error {
	if d.sqlDB != nil {
		tx, err := d.sqlDB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(sqlQ{tx}); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	return pgx.BeginFunc(ctx, d.pgPool, func(tx pgx.Tx) error { return fn(pgxQ{tx}) })
}

// withMigrationLock serializes schema changes between processes that share a
// PostgreSQL database (two servers starting at once would otherwise race on
// CREATE TABLE). SQLite needs nothing: its writer lock does the same.
func (d *database) withMigrationLock(ctx context.Context, fn func() error) error {
	if d.pgPool == nil {
		return fn()
	}
	conn, err := d.pgPool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("server: migration lock: %w", err)
	}
	defer conn.Release()
	const lockKey = 0x7a696d67 // "zimg"
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return fmt.Errorf("server: migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey) }()
	return fn()
}

func (d *database) close() {
	if d.sqlDB != nil {
		_ = d.sqlDB.Close()
	}
	if d.pgPool != nil {
		d.pgPool.Close()
	}
}

// appSchema is the server's own tables. Only types that mean the same on
// SQLite and PostgreSQL are used: TEXT, and BIGINT for counts, flags and
// times (Unix milliseconds, UTC).
var appSchema = []string{
	`CREATE TABLE IF NOT EXISTS zimage_keys (
		id              TEXT PRIMARY KEY,
		name            TEXT NOT NULL,
		hash            TEXT NOT NULL UNIQUE,
		prefix          TEXT NOT NULL,
		credits         BIGINT NOT NULL,
		reserved        BIGINT NOT NULL DEFAULT 0,
		rate_per_minute BIGINT NOT NULL,
		revoked         BIGINT NOT NULL DEFAULT 0,
		created_at      BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS zimage_tasks (
		id            TEXT PRIMARY KEY,
		key_id        TEXT NOT NULL,
		source        TEXT NOT NULL,
		prompt        TEXT NOT NULL,
		aspect_ratio  TEXT NOT NULL,
		width         BIGINT NOT NULL,
		height        BIGINT NOT NULL,
		seed          BIGINT NOT NULL,
		n             BIGINT NOT NULL,
		price         BIGINT NOT NULL,
		state         TEXT NOT NULL,
		images        BIGINT NOT NULL DEFAULT 0,
		token         TEXT NOT NULL,
		error_message TEXT NOT NULL DEFAULT '',
		consumed      BIGINT NOT NULL DEFAULT 0,
		attempts      BIGINT NOT NULL DEFAULT 0,
		job_id        BIGINT NOT NULL DEFAULT 0,
		created_at    BIGINT NOT NULL,
		started_at    BIGINT NOT NULL DEFAULT 0,
		finished_at   BIGINT NOT NULL DEFAULT 0,
		` + imagesDeletedColumn + `,
		` + fingerprintColumn + `,
		` + waitersColumn + `,
		` + cancelAtColumn + `,
		` + deliveredColumn + `
	)`,
	`CREATE INDEX IF NOT EXISTS zimage_tasks_key_created ON zimage_tasks (key_id, created_at)`,
	`CREATE INDEX IF NOT EXISTS zimage_tasks_state ON zimage_tasks (state)`,
	// One row per charged task: the primary key makes a second charge for the
	// same task impossible, whatever happens to the worker.
	// Idempotency-Key → the task it started (see idempotency.go).
	`CREATE TABLE IF NOT EXISTS zimage_idempotency (
		key_id      TEXT NOT NULL,
		idem_key    TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		task_id     TEXT NOT NULL,
		created_at  BIGINT NOT NULL,
		PRIMARY KEY (key_id, idem_key)
	)`,
	`CREATE TABLE IF NOT EXISTS zimage_charges (
		task_id    TEXT PRIMARY KEY,
		key_id     TEXT NOT NULL,
		amount     BIGINT NOT NULL,
		created_at BIGINT NOT NULL
	)`,
}

// imagesDeletedColumn records when retention deleted a task's images (Unix
// ms; 0 = still there). Added to databases made before image retention.
const imagesDeletedColumn = `images_deleted_at BIGINT NOT NULL DEFAULT 0`

// Columns added for idempotency and abandoned synchronous requests: the
// request body's fingerprint, the synchronous requests waiting for the task,
// and when a task whose waiters all left is to be cancelled (Unix ms; 0 = not).
const (
	fingerprintColumn = `fingerprint TEXT NOT NULL DEFAULT ''`
	waitersColumn     = `waiters BIGINT NOT NULL DEFAULT 0`
	cancelAtColumn    = `cancel_at BIGINT NOT NULL DEFAULT 0`
	// delivered: a synchronous request received the outcome (1), so an SDK
	// retry with the same body is a new call, not a repeat of this one.
	deliveredColumn = `delivered BIGINT NOT NULL DEFAULT 0`
)

// laterSchema runs after the columns of older databases are added.
var laterSchema = []string{
	// The retention sweep's lookup: succeeded tasks whose images remain,
	// oldest first, without reading the ones already swept.
	`CREATE INDEX IF NOT EXISTS zimage_tasks_images ON zimage_tasks (state, images_deleted_at, finished_at)`,
	// An OpenAI SDK retry finds the task it repeats.
	`CREATE INDEX IF NOT EXISTS zimage_tasks_fingerprint ON zimage_tasks (key_id, fingerprint, created_at)`,
}

// pgSchema is PostgreSQL's alone: the images, shared by every process. The
// row of a task's images is written in the transaction that marks it SUCCESS.
var pgSchema = []string{
	`CREATE TABLE IF NOT EXISTS zimage_task_images (
		task_id    TEXT NOT NULL,
		idx        BIGINT NOT NULL,
		png        BYTEA NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (task_id, idx)
	)`,
}

func migrateApp(ctx context.Context, d *database) error {
	return d.inTx(ctx, func(q dbtx) error {
		for _, stmt := range appSchema {
			if _, err := q.exec(ctx, stmt); err != nil {
				return fmt.Errorf("server: create schema: %w", err)
			}
		}
		for _, c := range [][2]string{
			{"images_deleted_at", imagesDeletedColumn}, {"fingerprint", fingerprintColumn},
			{"waiters", waitersColumn}, {"cancel_at", cancelAtColumn}, {"delivered", deliveredColumn},
			{"loras", loraColumnDef},
		} {
			if err := addColumn(ctx, q, d.engine, "zimage_tasks", c[0], c[1]); err != nil {
				return err
			}
		}
		later := laterSchema
		if d.engine == enginePostgres {
			later = append(later[:len(later):len(later)], pgSchema...)
		}
		for _, stmt := range later {
			if _, err := q.exec(ctx, stmt); err != nil {
				return fmt.Errorf("server: create schema: %w", err)
			}
		}
		return nil
	})
}

// addColumn adds a column to a table of an older database unless it is
// there already. SQLite has no ADD COLUMN IF NOT EXISTS, so it is asked.
func addColumn(ctx context.Context, q dbtx, engine, table, column, def string) error {
	if engine == enginePostgres {
		if _, err := q.exec(ctx, `ALTER TABLE `+table+` ADD COLUMN IF NOT EXISTS `+def); err != nil {
			return fmt.Errorf("server: upgrade schema: add %s.%s: %w", table, column, err)
		}
		return nil
	}
	var n int64
	if err := q.queryRow(ctx, `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n); err != nil {
		return fmt.Errorf("server: upgrade schema: inspect %s: %w", table, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := q.exec(ctx, `ALTER TABLE `+table+` ADD COLUMN `+def); err != nil {
		return fmt.Errorf("server: upgrade schema: add %s.%s: %w", table, column, err)
	}
	return nil
}
