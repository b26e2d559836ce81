package server

import (
	"context"
	"image"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// pipelineGen runs jobs on the real pipeline (cmd/zimage has the same
// adapter for `zimage serve`).
type pipelineGen struct{ p *zimage.Pipeline }

func (g pipelineGen) Generate(ctx context.Context, job Job) (image.Image, int64, error) {
	res, err := g.p.Run(ctx, zimage.Request{Prompt: job.Prompt, Width: job.Width, Height: job.Height, Seed: job.Seed})
	if err != nil {
		return nil, 0, err
	}
	return res.Image, res.Seed, nil
}

// TestLoadTinyModel is the small load test on the real pipeline: 12
// requests from 4 concurrent clients, tiny fixture model, 64×64, CPU.
func TestLoadTinyModel(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	p, err := zimage.Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), zimage.WithDevice("cpu"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	dir := t.TempDir()
	e := &testEnv{t: t}
	srv, err := New(context.Background(), Config{
		DataDir: dir, Generator: pipelineGen{p}, Resolution: 64, PollInterval: 50 * time.Millisecond, Logger: testLogger(t),
	})
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	e.srv = srv
	ts := newHTTPServer(t, srv)
	e.url = ts
	e.store = &Store{db: srv.db}
	key, info := e.addKey(12*15, 0)

	ids, sub := runLoad(t, e.url, key, 12, 4)
	waitAllDone(t, srv.db.q, ids, 5*time.Minute)
	st := statsOf(t, srv.db.q, ids, sub)
	t.Logf("load (SQLite, 1 worker, tiny model 64×64 on CPU): %v", st)
	require.Equal(t, int64(0), e.key(info.ID).Credits)
}
