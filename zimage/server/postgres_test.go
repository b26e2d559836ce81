package server

import (
	"context"
	"fmt"
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
// processes on one PostgreSQL queue, and checks that every task runs
// exactly once, on one of the workers, and is charged once.
func TestPostgresTwoWorkers(t *testing.T) {
	dbURL := postgresURL(t)
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	shared := t.TempDir() // images: the API serves what the workers write
	e := startServer(t, shared, nil, func(c *Config) {
		c.DatabaseURL = dbURL
		c.Role = RoleAPI
		c.Price = 10
		c.MaxQueue = 1000
	})
	key, info := e.addKey(10_000, 0)

	logPath := filepath.Join(t.TempDir(), "exec.log")
	args := []string{"--role", "worker", "--database", dbURL, "--data", shared, "--delay", "20ms", "--log", logPath}
	w1 := startProc(t, args...)
	w2 := startProc(t, args...)

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
		require.Equal(t, 200, do(t, "GET", s.Response[0], "", nil).Status)
	}
	w1.stop(t)
	w2.stop(t)

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
	shared := t.TempDir()
	e := startServer(t, shared, nil, func(c *Config) {
		c.DatabaseURL = dbURL
		c.Role = RoleAPI
		c.Price = 10
	})
	key, info := e.addKey(1000, 0)
	logPath := filepath.Join(t.TempDir(), "exec.log")
	args := []string{"--role", "worker", "--database", dbURL, "--data", shared, "--log", logPath, "--rescue-after", "5s", "--task-timeout", "5s"}
	w1 := startProc(t, append(args, "--delay", "30s")...)
	id := e.submitOK(key, "long")
	require.Eventually(t, func() bool {
		tk, err := getTask(context.Background(), e.srv.db.q, id)
		return err == nil && tk.State == stateRunning
	}, 20*time.Second, 20*time.Millisecond)
	w1.kill(t)

	w2 := startProc(t, append(args, "--delay", "10ms")...)
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
	w2.stop(t)
	perTask, _ := execLog(t, logPath)
	assert.Equal(t, 1, perTask[id])
	assert.Equal(t, int64(990), e.key(info.ID).Credits)
	assert.Equal(t, int64(1), charges(t, e.srv.db.q, id))
}
