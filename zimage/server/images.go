package server

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// errImageMissing is returned by imageStore.load for an image it does not
// hold (never written, or deleted by retention).
var errImageMissing = errors.New("server: image not stored")

// imageStore keeps the PNG bytes of finished tasks. The HTTP handlers see
// only this; where the bytes live depends on the database:
//
//   - SQLite (one process): files in the data directory (fileStore). The
//     embedded database has a single connection that the queue also uses, so
//     multi-megabyte blobs in it would make image downloads wait on, and
//     delay, queue work; files keep it small and are served beside it.
//   - PostgreSQL (several processes, several machines): rows of the shared
//     database (dbImageStore), so that whatever process serves the API can
//     serve an image made by a worker on another machine.
type imageStore interface {
	// save stores a task's images (index i is pngs[i]). q is the transaction
	// that marks the task SUCCESS and charges it: a store that writes through
	// q commits the images with the outcome, or not at all.
	save(ctx context.Context, q dbtx, taskID string, pngs [][]byte) error
	// load returns one image, or errImageMissing.
	load(ctx context.Context, taskID string, index int) ([]byte, error)
	// remove deletes the images of tasks; q is the transaction that records
	// the deletion.
	remove(ctx context.Context, q dbtx, taskIDs []string) error
}

// encodePNG encodes one generated image.
func encodePNG(taskID string, index int, img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("server: encode image %d of %s: %w", index, taskID, err)
	}
	return buf.Bytes(), nil
}

// fileStore keeps the images as PNG files, one directory per task:
// DIR/<task id>/<index>.png.
type fileStore struct {
	dir string
}

func (f *fileStore) path(taskID string, index int) string {
	return filepath.Join(f.dir, taskID, strconv.Itoa(index)+".png")
}

// save writes each file atomically (temporary file, then rename), so a
// reader never sees half an image and a retried task simply replaces the
// files. They are on disk before the outcome commits, which is what makes a
// SUCCESS task always have its images.
func (f *fileStore) save(_ context.Context, _ dbtx, taskID string, pngs [][]byte) error {
	dir := filepath.Join(f.dir, taskID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("server: image directory: %w", err)
	}
	for i, data := range pngs {
		if err := f.write(dir, taskID, i, data); err != nil {
			return err
		}
	}
	return nil
}

func (f *fileStore) write(dir, taskID string, index int, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*.png")
	if err != nil {
		return fmt.Errorf("server: save image: %w", err)
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if werr != nil || serr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("server: save image %s: %v", f.path(taskID, index), firstErr(werr, serr, cerr))
	}
	if err := os.Rename(tmp.Name(), f.path(taskID, index)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("server: save image: %w", err)
	}
	return nil
}

func (f *fileStore) load(_ context.Context, taskID string, index int) ([]byte, error) {
	data, err := os.ReadFile(f.path(taskID, index))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", errImageMissing, f.path(taskID, index))
	}
	return data, err
}

// remove deletes the task directories. It runs before the deletion commits:
// if the commit fails, the next sweep finds the tasks again and finishes.
func (f *fileStore) remove(_ context.Context, _ dbtx, taskIDs []string) error {
	for _, id := range taskIDs {
		// Task IDs come from the database, but a path must never escape the
		// image directory whatever it holds.
		if id == "" || strings.ContainsAny(id, `/\.`) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(f.dir, id)); err != nil {
			return fmt.Errorf("server: delete images of %s: %w", id, err)
		}
	}
	return nil
}

// dbImageStore keeps the images in the zimage_task_images table of the
// shared PostgreSQL database.
type dbImageStore struct {
	db *database
}

func (d *dbImageStore) save(ctx context.Context, q dbtx, taskID string, pngs [][]byte) error {
	for i, data := range pngs {
		_, err := q.exec(ctx, `INSERT INTO zimage_task_images (task_id, idx, png, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (task_id, idx) DO UPDATE SET png = excluded.png, created_at = excluded.created_at`,
			taskID, int64(i), data, time.Now().UnixMilli())
		if err != nil {
			return fmt.Errorf("server: store image %d of %s: %w", i, taskID, err)
		}
	}
	return nil
}

func (d *dbImageStore) load(ctx context.Context, taskID string, index int) ([]byte, error) {
	var data []byte
	err := d.db.q.queryRow(ctx, `SELECT png FROM zimage_task_images WHERE task_id = ? AND idx = ?`, taskID, int64(index)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: image %d of %s", errImageMissing, index, taskID)
	}
	if err != nil {
		return nil, fmt.Errorf("server: load image %d of %s: %w", index, taskID, err)
	}
	return data, nil
}

func (d *dbImageStore) remove(ctx context.Context, q dbtx, taskIDs []string) error {
	for _, id := range taskIDs {
		if _, err := q.exec(ctx, `DELETE FROM zimage_task_images WHERE task_id = ?`, id); err != nil {
			return fmt.Errorf("server: delete images of %s: %w", id, err)
		}
	}
	return nil
}

// sweepBatch is how many tasks' images one sweep transaction deletes.
const sweepBatch = 200

// sweepImages deletes the images of tasks that finished before
// now-KeepImages and records the deletion in their rows (the status then
// says so, and the URLs answer 404). It returns how many tasks it cleared.
// Several processes may sweep one database at once: a deletion already
// made is not made again.
func (s *Server) sweepImages(ctx context.Context, now time.Time) (int, error) {
	if s.cfg.KeepImages <= 0 {
		return 0, nil
	}
	cutoff := now.Add(-s.cfg.KeepImages).UnixMilli()
	total := 0
	for {
		var ids []string
		var cleared int
		err := s.db.inTx(ctx, func(q dbtx) error {
			ids, cleared = ids[:0], 0
			rows, err := q.query(ctx, `SELECT id FROM zimage_tasks
				WHERE state = ? AND images_deleted_at = 0 AND finished_at < ?
				ORDER BY finished_at LIMIT `+strconv.Itoa(sweepBatch), stateSucceeded, cutoff)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil || len(ids) == 0 {
				return err
			}
			if err := s.images.remove(ctx, q, ids); err != nil {
				return err
			}
			for _, id := range ids {
				n, err := q.exec(ctx, `UPDATE zimage_tasks SET images_deleted_at = ? WHERE id = ? AND images_deleted_at = 0`,
					now.UnixMilli(), id)
				if err != nil {
					return err
				}
				cleared += int(n) // 0 where another process got there first
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("server: delete old images: %w", err)
		}
		total += cleared
		s.metrics.imagesDeleted.Add(int64(cleared))
		if len(ids) < sweepBatch {
			return total, nil
		}
	}
}

// sweepLoop runs sweepImages at start and then every interval until ctx
// ends.
func (s *Server) sweepLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.sweepImages(ctx, time.Now())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Error("image retention", "err", err)
		case n > 0:
			s.log.Info("old images deleted", "tasks", n, "kept_for", s.cfg.KeepImages.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepInterval is how often the retention sweep runs: often enough that
// an image outlives its retention by a small fraction of it.
func sweepInterval(keep time.Duration) time.Duration {
	return min(max(keep/20, time.Second), 10*time.Minute)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
