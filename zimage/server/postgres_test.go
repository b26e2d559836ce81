package server

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// postgresURL returns a fresh, empty database on the server named by
// $ZIMAGE_TEST_POSTGRES (scripts/ci-postgres.sh starts one), dropped at the
// end of the test; the test is skipped without it.
func postgresURL(t *testing.T) string {
	t.Helper()
	base := os.Getenv("ZIMAGE_TEST_POSTGRES")
	if base == "" {
		t.Skip("ZIMAGE_TEST_POSTGRES is not set; run eval \"$(scripts/ci-postgres.sh start)\" for the PostgreSQL tests")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	require.NoError(t, err, "connect to $ZIMAGE_TEST_POSTGRES")
	name := "zimage_test_" + randomHex(6)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = conn.Close(context.Background())
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}

// TestPostgresAPI runs the main API paths in one process on PostgreSQL:
// the same SQL as on SQLite, with PostgreSQL's placeholders and locking.
func TestPostgresAPI(t *testing.T) {
	dbURL := postgresURL(t)
	e := startServer(t, t.TempDir(), newTestGen(), func(c *Config) { c.DatabaseURL = dbURL })
	key, info := e.addKey(40, 2)
	other, _ := e.addKey(100, 0)

	id := e.submitOK(key, "a harbour at night")
	s := e.waitDone(key, id)
	require.Equal(t, "SUCCESS", s.Status, s.ErrorMessage)
	assert.Equal(t, int64(15), s.ConsumedCredits)
	assert.Equal(t, 200, do(t, "GET", s.Response[0], "", nil).Status)
	r, _ := e.status(other, id)
	assert.Equal(t, 404, r.Status, "key isolation")

	id = e.submitOK(key, "FAIL this one")
	assert.Equal(t, "FAILED", e.waitDone(key, id).Status)
	k := e.key(info.ID)
	assert.Equal(t, int64(25), k.Credits, "failure not charged")
	assert.Equal(t, int64(0), k.Reserved)

	r = e.generate(key, map[string]any{"prompt": "third", "aspect_ratio": "1:1"})
	assert.Equal(t, 429, r.Status, "rate 2/min: %s", r.Body)
	assert.NotEmpty(t, r.Header.Get("Retry-After"))

	e.submitOK(other, "BLOCK")
	poor, _ := e.addKey(10, 0)
	assert.Equal(t, 402, e.generate(poor, map[string]any{"prompt": "x", "aspect_ratio": "1:1"}).Status)
	close(e.gen.release)
}

// TestPostgresTwoWorkers runs an API process (in the test) and two worker
// processes on one PostgreSQL queue, each with its own data directory as on
// separate machines, and checks that every task runs exactly once, on one
// of the workers, is charged once, and that the API process serves the
// image the worker made (from the database: no process shares files).
func TestPostgresTwoWorkers(t *testing.T) {
	dbURL := postgresURL(t)
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	apiDir := t.TempDir()
	e := startServer(t, apiDir, nil, func(c *Config) {
		c.DatabaseURL = dbURL
		c.Role = RoleAPI
		c.Price = 10
		c.MaxQueue = 1000
	})
	key, info := e.addKey(10_000, 0)

	logPath := filepath.Join(t.TempDir(), "exec.log")
	args := []string{"--role", "worker", "--database", dbURL, "--delay", "20ms", "--log", logPath}
	w1Dir, w2Dir := t.TempDir(), t.TempDir()
	w1 := startProc(t, append(args, "--data", w1Dir)...)
	w2 := startProc(t, append(args, "--data", w2Dir)...)

	const n = 60
	ids := make([]string, n)
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += 6 {
				ids[i] = e.submitOK(key, fmt.Sprintf("task %d", i))
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		s := e.waitDone(key, id)
		require.Equal(t, "SUCCESS", s.Status, s.ErrorMessage)
		checkFakeImage(t, s)
	}
	w1.stop(t)
	w2.stop(t)
	// The images went to the database, not to any data directory.
	for _, dir := range []string{apiDir, w1Dir, w2Dir} {
		_, err := os.Stat(filepath.Join(dir, "images"))
		assert.True(t, os.IsNotExist(err), "%s/images exists: %v", dir, err)
	}
	var stored int64
	require.NoError(t, e.srv.db.q.queryRow(context.Background(), `SELECT COUNT(*) FROM zimage_task_images`).Scan(&stored))
	assert.Equal(t, int64(n), stored)

	perTask, perPID := execLog(t, logPath)
	for _, id := range ids {
		assert.Equal(t, 1, perTask[id], "task %s ran %d times", id, perTask[id])
	}
	assert.Len(t, perTask, n)
	assert.Len(t, perPID, 2, "both workers took tasks: %v", perPID)
	t.Logf("tasks per worker process: %v", perPID)

	k := e.key(info.ID)
	assert.Equal(t, int64(10_000-n*10), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
	for _, id := range ids {
		assert.Equal(t, int64(1), charges(t, e.srv.db.q, id))
	}
}

// TestPostgresWorkerDies kills a worker in the middle of a task; with a
// short rescue time the task is taken over by the other worker, and it is
// charged once.
func TestPostgresWorkerDies(t *testing.T) {
	dbURL := postgresURL(t)
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	e := startServer(t, t.TempDir(), nil, func(c *Config) {
		c.DatabaseURL = dbURL
		c.Role = RoleAPI
		c.Price = 10
	})
	key, info := e.addKey(1000, 0)
	logPath := filepath.Join(t.TempDir(), "exec.log")
	args := []string{"--role", "worker", "--database", dbURL, "--log", logPath, "--rescue-after", "5s", "--task-timeout", "5s"}
	w1 := startProc(t, append(args, "--delay", "30s", "--data", t.TempDir())...)
	id := e.submitOK(key, "long")
	require.Eventually(t, func() bool {
		tk, err := getTask(context.Background(), e.srv.db.q, id)
		return err == nil && tk.State == stateRunning
	}, 20*time.Second, 20*time.Millisecond)
	w1.kill(t)

	w2 := startProc(t, append(args, "--delay", "10ms", "--data", t.TempDir())...)
	deadline := time.Now().Add(60 * time.Second)
	var s statusResp
	for time.Now().Before(deadline) {
		_, s = e.status(key, id)
		if s.Status != "IN_PROGRESS" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, "SUCCESS", s.Status, s.ErrorMessage)
	checkFakeImage(t, s)
	w2.stop(t)
	perTask, _ := execLog(t, logPath)
	assert.Equal(t, 1, perTask[id])
	assert.Equal(t, int64(990), e.key(info.ID).Credits)
	assert.Equal(t, int64(1), charges(t, e.srv.db.q, id))
}

// checkFakeImage fetches a task's image through its URL and checks that it
// is the one testserve's generator draws for the task's seed.
func checkFakeImage(t *testing.T, s statusResp) {
	t.Helper()
	require.Len(t, s.Response, 1)
	r := do(t, "GET", s.Response[0], "", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	img, err := png.Decode(bytes.NewReader(r.Body))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 64, 64), img.Bounds())
	cr, cg, cb, _ := img.At(31, 17).RGBA()
	want := [3]uint8{uint8(s.Request.Seed), uint8(s.Request.Seed >> 8), 0}
	require.Equal(t, want, [3]uint8{uint8(cr >> 8), uint8(cg >> 8), uint8(cb >> 8)}, "image of task %s", s.TaskID)
}

// TestPostgresImageRetention is the retention protocol on the database
// store, in a process without a data directory.
func TestPostgresImageRetention(t *testing.T) {
	dbURL := postgresURL(t)
	e := startServer(t, "", newTestGen(), func(c *Config) {
		c.DatabaseURL = dbURL
		c.KeepImages = time.Hour
	})
	checkRetention(t, e, func(id string) bool {
		_, err := e.srv.images.load(context.Background(), id, 0)
		if err != nil {
			require.ErrorIs(t, err, errImageMissing)
		}
		return err == nil
	})
}

// TestPostgresUpgradeOldSchema opens a database made before image
// retention (and before images were kept in it).
func TestPostgresUpgradeOldSchema(t *testing.T) {
	dbURL := postgresURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, oldTasksTable)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, oldTaskRow)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	checkUpgrade(t, "", dbURL)
}

func TestPostgresSettleAtomicWithImages(t *testing.T) {
	checkSettleAtomic(t, t.TempDir(), postgresURL(t))
}
