package server

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// metrics are this process's counters, written out in the Prometheus text
// format by hand (the format is simple and a client library is not needed).
type metrics struct {
	submitted atomic.Int64
	succeeded atomic.Int64
	failed    atomic.Int64
	cancelled atomic.Int64 // tasks cancelled because their clients went away
	running   atomic.Int64

	imagesDeleted atomic.Int64 // tasks whose images retention deleted

	queueWait *histogram // seconds from submission to start of the attempt
	runTime   *histogram // seconds a task ran (to success or failure)

	mu       sync.Mutex
	requests map[[2]string]int64 // (route, status code) → count
}

func newMetrics() *metrics {
	buckets := []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	return &metrics{
		queueWait: newHistogram(buckets),
		runTime:   newHistogram(buckets),
		requests:  map[[2]string]int64{},
	}
}

func (m *metrics) request(route string, code int) {
	m.mu.Lock()
	m.requests[[2]string{route, strconv.Itoa(code)}]++
	m.mu.Unlock()
}

// retryAfter estimates, in seconds, when a full queue will have room: the
// time for the workers to get through one task each, from the mean run time
// seen so far (10 s before any task ran), between 1 s and 10 min.
func (m *metrics) retryAfter(depth int64, workers int) int {
	mean := 10.0
	if n, sum := m.runTime.countSum(); n > 0 {
		mean = sum / float64(n)
	}
	return int(min(max(math.Ceil(mean/float64(max(workers, 1))), 1), 600))
}

// write renders the metrics; queueDepth is read from the database by the
// caller (it is shared by all processes).
func (m *metrics) write(w io.Writer, queued, running int64) {
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge("zimage_queue_depth", "Tasks queued or running, in all processes.", queued+running)
	gauge("zimage_queue_waiting", "Tasks queued and not yet started, in all processes.", queued)
	gauge("zimage_tasks_running", "Tasks running in this process.", m.running.Load())
	counter("zimage_tasks_submitted_total", "Tasks accepted by this process.", m.submitted.Load())
	counter("zimage_tasks_succeeded_total", "Tasks completed by this process.", m.succeeded.Load())
	counter("zimage_tasks_failed_total", "Tasks that failed in this process.", m.failed.Load())
	counter("zimage_tasks_cancelled_total", "Tasks cancelled unbilled by this process because their clients went away.", m.cancelled.Load())
	counter("zimage_task_images_deleted_total", "Tasks whose images this process deleted for retention.", m.imagesDeleted.Load())
	m.queueWait.write(w, "zimage_task_queue_seconds", "Time from submission to the start of a task attempt.")
	m.runTime.write(w, "zimage_task_run_seconds", "Time a task attempt ran, to success or failure.")

	m.mu.Lock()
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	fmt.Fprintf(w, "# HELP zimage_http_requests_total HTTP requests by route and status code.\n# TYPE zimage_http_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "zimage_http_requests_total{route=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	m.mu.Unlock()
}

// histogram is a Prometheus histogram with fixed buckets.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []int64 // per bucket, not cumulative; last is +Inf
	sum    float64
	n      int64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound ≥ v
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.n++
	h.mu.Unlock()
}

func (h *histogram) countSum() (int64, float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, h.sum
}

func (h *histogram) write(w io.Writer, name, help string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(h.bounds)]
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, cum, name, h.sum, name, h.n)
}
