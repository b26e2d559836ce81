package gemm

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelForBusyPool: with every pool helper busy, a parallel loop is
// run by its caller alone (it waits for tasks, never for a helper to
// start), and the helper job it queued, started late, does nothing.
func TestParallelForBusyPool(t *testing.T) {
	ensureWorkers(3) // as many as parallelFor(4, …) asks for
	release := make(chan struct{})
	busy := int(poolWorkers.Load())
	started := make(chan struct{}, busy)
	for range busy {
		if !Offer(busy, func() { started <- struct{}{}; <-release }) {
			t.Fatal("queue full")
		}
	}
	for range busy {
		<-started
	}
	var ran atomic.Int64
	workers := make(map[int]bool)
	done := make(chan struct{})
	go func() {
		defer close(done)
		parallelFor(4, 50, nil, func(w, _ int) {
			workers[w] = true // only the caller runs: no race
			ran.Add(1)
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("parallelFor waited for a busy pool")
	}
	close(release)
	if ran.Load() != 50 || len(workers) != 1 || !workers[0] {
		t.Fatalf("ran %d tasks on workers %v, want 50 on the caller", ran.Load(), workers)
	}
	// The late helpers find nothing to do; the pool keeps working.
	var n atomic.Int64
	parallelFor(2, 100, nil, func(_, _ int) { n.Add(1) })
	if n.Load() != 100 {
		t.Fatalf("ran %d of 100 tasks", n.Load())
	}
}
