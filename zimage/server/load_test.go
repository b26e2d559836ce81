package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// loadStats summarizes finished tasks from the database.
type loadStats struct {
	tasks         int
	elapsed       time.Duration // first submission to last completion
	queueP50      time.Duration // submission → start
	queueP99      time.Duration
	totalP50      time.Duration // submission → completion
	totalP99      time.Duration
	tasksPerSec   float64
	submitPerSec  float64
	submitElapsed time.Duration
}

func (s loadStats) String() string {
	return fmt.Sprintf("%d tasks in %v: %.1f tasks/s (submissions %.0f/s); queue latency p50 %v p99 %v; submit→done p50 %v p99 %v",
		s.tasks, s.elapsed.Round(time.Millisecond), s.tasksPerSec, s.submitPerSec, s.queueP50, s.queueP99, s.totalP50, s.totalP99)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func statsOf(t testing.TB, q dbtx, ids []string, submitElapsed time.Duration) loadStats {
	var queue, total []time.Duration
	var first, last int64
	for _, id := range ids {
		tk, err := getTask(context.Background(), q, id)
		require.NoError(t, err)
		require.Equal(t, stateSucceeded, tk.State, tk.Error)
		queue = append(queue, time.Duration(tk.StartedAt-tk.CreatedAt)*time.Millisecond)
		total = append(total, time.Duration(tk.FinishedAt-tk.CreatedAt)*time.Millisecond)
		if first == 0 || tk.CreatedAt < first {
			first = tk.CreatedAt
		}
		last = max(last, tk.FinishedAt)
	}
	slices.Sort(queue)
	slices.Sort(total)
	el := time.Duration(last-first) * time.Millisecond
	return loadStats{
		tasks: len(ids), elapsed: el,
		queueP50: percentile(queue, 0.5), queueP99: percentile(queue, 0.99),
		totalP50: percentile(total, 0.5), totalP99: percentile(total, 0.99),
		tasksPerSec:   float64(len(ids)) / max(el.Seconds(), 1e-3),
		submitPerSec:  float64(len(ids)) / max(submitElapsed.Seconds(), 1e-3),
		submitElapsed: submitElapsed,
	}
}

// runLoad submits n generations from `clients` concurrent clients, then
// waits for all of them.
func runLoad(t testing.TB, url, key string, n, clients int) (ids []string, submitElapsed time.Duration) {
	ids = make([]string, n)
	errs := make(chan error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += clients {
				r := do(t, "POST", url+"/api/generate", key, map[string]any{"prompt": fmt.Sprintf("load %d", i), "aspect_ratio": "1:1"})
				if r.Status != 200 {
					errs <- fmt.Errorf("request %d: %d %s", i, r.Status, r.Body)
					continue
				}
				var d map[string]string
				r.data(&d)
				ids[i] = d["task_id"]
			}
		}()
	}
	wg.Wait()
	submitElapsed = time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids, submitElapsed
}

func waitAllDone(t testing.TB, q dbtx, ids []string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var n int64
		require.NoError(t, q.queryRow(context.Background(), `SELECT COUNT(*) FROM zimage_tasks WHERE state IN ('queued','running')`).Scan(&n))
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("tasks still pending after %v", timeout)
}

// TestLoad: 200 generation requests from 20 concurrent clients against a
// fast generator (no delay: this measures the server and its queue), on the
// embedded database. Bounded: 200 requests, 60 s at most.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	e := newEnv(t, func(c *Config) { c.MaxQueue = 1000 })
	key, info := e.addKey(200*15, 0)
	ids, sub := runLoad(t, e.url, key, 200, 20)
	waitAllDone(t, e.srv.db.q, ids, 60*time.Second)
	st := statsOf(t, e.srv.db.q, ids, sub)
	t.Logf("load (SQLite, 1 worker, instant generator): %v", st)
	k := e.key(info.ID)
	require.Equal(t, int64(0), k.Credits, "200 tasks charged exactly once each")
	require.Equal(t, int64(0), k.Reserved)
}

// BenchmarkGenerate measures whole tasks through the HTTP API and the queue
// (b.N requests from 20 clients, instant generator), and reports tasks/s and
// the queue latency percentiles.
func BenchmarkGenerate(b *testing.B) {
	dir := b.TempDir()
	srv, err := New(context.Background(), Config{
		DataDir: dir, Generator: newTestGen(), Resolution: 64, MaxQueue: 1 << 30,
		PollInterval: 50 * time.Millisecond, Logger: testLogger(b),
	})
	require.NoError(b, err)
	require.NoError(b, srv.Start(context.Background()))
	ts := httptest.NewServer(srv.Handler())
	defer func() { ts.Close(); _ = srv.Shutdown(context.Background()) }()
	st := &Store{db: srv.db}
	key, _, err := st.AddKey(context.Background(), "bench", int64(b.N)*15, 0)
	require.NoError(b, err)

	b.ResetTimer()
	ids, sub := runLoad(b, ts.URL, key, b.N, 20)
	waitAllDone(b, srv.db.q, ids, 10*time.Minute)
	b.StopTimer()
	s := statsOf(b, srv.db.q, ids, sub)
	b.ReportMetric(s.tasksPerSec, "tasks/s")
	b.ReportMetric(float64(s.queueP50.Milliseconds()), "p50-queue-ms")
	b.ReportMetric(float64(s.queueP99.Milliseconds()), "p99-queue-ms")
}
