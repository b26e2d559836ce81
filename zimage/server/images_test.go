package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkRetention runs the image retention protocol on a server started
// with KeepImages = 1h: a task aged past it loses its images (URL 404,
// status SUCCESS saying so), a recent one keeps them. stored reports
// whether the store still holds a task's image 0.
func checkRetention(t *testing.T, e *testEnv, stored func(taskID string) bool) {
	t.Helper()
	ctx := context.Background()
	key, _ := e.addKey(100, 0)
	other, _ := e.addKey(100, 0)
	oldID := e.submitOK(key, "old")
	newID := e.submitOK(key, "new")
	old := e.waitDone(key, oldID)
	fresh := e.waitDone(key, newID)
	require.Equal(t, "SUCCESS", old.Status, old.ErrorMessage)
	require.Equal(t, "SUCCESS", fresh.Status, fresh.ErrorMessage)
	assert.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`, old.ImagesExpireAt, "expiry shown while retention is on")
	assert.Empty(t, old.ImagesDeletedAt)
	assert.Empty(t, old.ErrorMessage)
	require.Len(t, old.Response, 1)
	oldURL := old.Response[0]
	bare, _, _ := strings.Cut(oldURL, "?")
	require.Equal(t, 200, do(t, "GET", oldURL, "", nil).Status)
	require.True(t, stored(oldID))

	// Age the first task past the retention and sweep.
	_, err := e.srv.db.q.exec(ctx, `UPDATE zimage_tasks SET finished_at = ? WHERE id = ?`,
		time.Now().Add(-2*time.Hour).UnixMilli(), oldID)
	require.NoError(t, err)
	n, err := e.srv.sweepImages(ctx, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.False(t, stored(oldID), "image deleted from the store")
	assert.True(t, stored(newID), "recent image kept")

	_, s := e.status(key, oldID)
	assert.Equal(t, "SUCCESS", s.Status, "the task stays SUCCESS")
	assert.Empty(t, s.Response, "no links to deleted images")
	assert.NotEmpty(t, s.ImagesDeletedAt)
	assert.Empty(t, s.ImagesExpireAt)
	assert.Contains(t, s.ErrorMessage, "deleted")
	assert.Equal(t, int64(15), s.ConsumedCredits, "still charged: the image was delivered")

	r := do(t, "GET", oldURL, "", nil)
	assert.Equal(t, 404, r.Status, "token URL of a deleted image")
	assert.Contains(t, r.Env.Message, "deleted")
	assert.Equal(t, 404, do(t, "GET", bare, key, nil).Status, "owner key")
	r = do(t, "GET", bare, other, nil)
	assert.Equal(t, 404, r.Status, "another key")
	assert.NotContains(t, r.Env.Message, "deleted", "another key learns nothing")
	assert.Equal(t, 200, do(t, "GET", fresh.Response[0], "", nil).Status, "recent image still served")

	n, err = e.srv.sweepImages(ctx, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 0, n, "a second sweep finds nothing")
	m := do(t, "GET", e.url+"/metrics", "", nil)
	assert.Contains(t, string(m.Body), "zimage_task_images_deleted_total 1")
}

func TestImageRetention(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeepImages = time.Hour })
	checkRetention(t, e, func(id string) bool {
		_, err := os.Stat(filepath.Join(e.dir, "images", id, "0.png"))
		return err == nil
	})
	// The task directory goes with its files.
	entries, err := os.ReadDir(filepath.Join(e.dir, "images"))
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

// TestImageRetentionRuns checks that the server sweeps by itself.
func TestImageRetentionRuns(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeepImages = time.Millisecond }) // swept every second
	key, _ := e.addKey(100, 0)
	id := e.submitOK(key, "short-lived")
	require.Equal(t, "SUCCESS", e.waitDone(key, id).Status)
	require.Eventually(t, func() bool {
		_, s := e.status(key, id)
		return s.ImagesDeletedAt != ""
	}, 10*time.Second, 50*time.Millisecond)
	_, s := e.status(key, id)
	assert.Equal(t, "SUCCESS", s.Status)
	_, err := os.Stat(filepath.Join(e.dir, "images", id))
	assert.True(t, os.IsNotExist(err), "files removed: %v", err)
}

func TestKeepImagesNegative(t *testing.T) {
	_, err := New(context.Background(), Config{DataDir: t.TempDir(), Generator: newTestGen(), KeepImages: -time.Second})
	assert.ErrorContains(t, err, "keep-images")
}

// oldTasksTable is zimage_tasks as the first release made it, before image
// retention: databases made then must open and gain the new column.
const oldTasksTable = `CREATE TABLE zimage_tasks (
	id TEXT PRIMARY KEY, key_id TEXT NOT NULL, source TEXT NOT NULL, prompt TEXT NOT NULL,
	aspect_ratio TEXT NOT NULL, width BIGINT NOT NULL, height BIGINT NOT NULL, seed BIGINT NOT NULL,
	n BIGINT NOT NULL, price BIGINT NOT NULL, state TEXT NOT NULL, images BIGINT NOT NULL DEFAULT 0,
	token TEXT NOT NULL, error_message TEXT NOT NULL DEFAULT '', consumed BIGINT NOT NULL DEFAULT 0,
	attempts BIGINT NOT NULL DEFAULT 0, job_id BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL,
	started_at BIGINT NOT NULL DEFAULT 0, finished_at BIGINT NOT NULL DEFAULT 0)`

const oldTaskRow = `INSERT INTO zimage_tasks (id, key_id, source, prompt, aspect_ratio, width, height, seed, n, price,
	state, images, token, created_at, finished_at) VALUES ('task_old', 'key_x', 'api', 'p', '1:1', 64, 64, 1, 1, 15,
	'succeeded', 1, 'tok', 1, 2)`

// checkUpgrade opens a database that holds the old table and checks that
// the task reads back with its images not deleted.
func checkUpgrade(t *testing.T, dir, dbURL string) {
	t.Helper()
	ctx := context.Background()
	for range 2 { // the second open finds the column there
		db, err := openDatabase(ctx, dir, dbURL)
		require.NoError(t, err)
		tk, err := getTask(ctx, db.q, "task_old")
		db.close()
		require.NoError(t, err)
		assert.Equal(t, stateSucceeded, tk.State)
		assert.Equal(t, int64(0), tk.ImagesDeletedAt)
	}
}

func TestUpgradeOldSchema(t *testing.T) {
	dir := t.TempDir()
	db, err := openDatabase(context.Background(), dir, "")
	require.NoError(t, err)
	_, err = db.sqlDB.Exec(`DROP TABLE zimage_tasks`)
	require.NoError(t, err)
	_, err = db.sqlDB.Exec(oldTasksTable)
	require.NoError(t, err)
	_, err = db.sqlDB.Exec(oldTaskRow)
	require.NoError(t, err)
	db.close()
	checkUpgrade(t, dir, "")
}

// failingImages is an imageStore whose first save does its work and then
// fails, as if the disk or the database broke just before the commit.
type failingImages struct {
	imageStore
	failed chan string // gets the task ID of the failed save
	once   sync.Once
}

func (f *failingImages) save(ctx context.Context, q dbtx, taskID string, pngs [][]byte) error {
	if err := f.imageStore.save(ctx, q, taskID, pngs); err != nil {
		return err
	}
	var fail bool
	f.once.Do(func() { fail = true })
	if !fail {
		return nil
	}
	f.failed <- taskID
	return errors.New("injected: storing the images failed")
}

// checkSettleAtomic checks that a task whose images could not be stored is
// neither SUCCESS nor charged, and succeeds on its next attempt.
func checkSettleAtomic(t *testing.T, dir, dbURL string) {
	t.Helper()
	ctx := context.Background()
	fail := &failingImages{failed: make(chan string, 1)}
	e := startServerHook(t, dir, newTestGen(), func(c *Config) { c.DatabaseURL = dbURL },
		func(s *Server) { fail.imageStore = s.images; s.images = fail })
	key, info := e.addKey(100, 0)
	id := e.submitOK(key, "unlucky")
	select {
	case got := <-fail.failed:
		require.Equal(t, id, got)
	case <-time.After(20 * time.Second):
		t.Fatal("the store was never asked to save")
	}
	// The failed settlement rolled back as one: not SUCCESS, not charged,
	// and (in the database store) no images.
	tk, err := getTask(ctx, e.srv.db.q, id)
	require.NoError(t, err)
	assert.NotEqual(t, stateSucceeded, tk.State)
	assert.Equal(t, int64(0), charges(t, e.srv.db.q, id))
	if e.srv.db.pgPool != nil {
		var rows int64
		require.NoError(t, e.srv.db.q.queryRow(ctx, `SELECT COUNT(*) FROM zimage_task_images WHERE task_id = ?`, id).Scan(&rows))
		assert.Equal(t, int64(0), rows)
	}

	s := e.waitDone(key, id)
	require.Equal(t, "SUCCESS", s.Status, s.ErrorMessage)
	assert.Equal(t, 2, e.gen.callsFor(id), "generated again on the retry")
	assert.Equal(t, 200, do(t, "GET", s.Response[0], "", nil).Status)
	assert.Equal(t, int64(1), charges(t, e.srv.db.q, id))
	k := e.key(info.ID)
	assert.Equal(t, int64(85), k.Credits)
	assert.Equal(t, int64(0), k.Reserved)
}

func TestSettleAtomicWithImages(t *testing.T) {
	checkSettleAtomic(t, t.TempDir(), "")
}
