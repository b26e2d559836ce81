package cpu

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// The worker pool is shared by every Backend in the process: GOMAXPROCS
// goroutines started on first use, fed helper tokens through a buffered
// channel. A parallel loop never waits for a helper that has not started,
// only for chunks that were claimed, so nested loops (an op whose chunks call
// another parallel routine) cannot deadlock: the caller runs whatever no idle
// worker picked up.
var (
	poolOnce sync.Once
	poolCh   chan *job
)

type job struct {
	fn     func(lo, hi int)
	n      int   // total iterations
	grain  int   // iterations per chunk
	chunks int64 // number of chunks
	next   atomic.Int64
	wg     sync.WaitGroup

	// A chunk's panic (a memory fault reading a weight file truncated while
	// mapped, which SetPanicOnFault turns into a panic) skips the rest of
	// the job and is raised again in the caller's goroutine.
	failed atomic.Bool
	pmu    sync.Mutex
	pval   any
}

// run claims and executes chunks until none are left.
func (j *job) run() {
	for {
		c := j.next.Add(1) - 1
		if c >= j.chunks {
			return
		}
		if j.failed.Load() {
			j.wg.Done()
			continue
		}
		j.chunk(int(c))
	}
}

// chunk runs chunk c, recording a panic instead of dying of it.
func (j *job) chunk(c int) {
	defer j.wg.Done()
	defer func() {
		if p := recover(); p != nil {
			j.pmu.Lock()
			if j.pval == nil {
				j.pval = p
			}
			j.pmu.Unlock()
			j.failed.Store(true)
		}
	}()
	lo := c * j.grain
	hi := min(lo+j.grain, j.n)
	j.fn(lo, hi)
}

func startPool() {
	n := runtime.GOMAXPROCS(0)
	poolCh = make(chan *job, 64*n)
	for range n {
		go func() {
			// Workers read mapped weights: a fault is a panic (recorded by
			// job.chunk), not a crash. Set once for the goroutine's life.
			debug.SetPanicOnFault(true)
			for j := range poolCh {
				j.run()
			}
		}()
	}
}

// parallelFor calls fn on disjoint subranges [lo, hi) covering [0, n), using
// up to threads goroutines (the caller included). grain is the minimum number
// of iterations per chunk; the range is cut into about 4 chunks per thread so
// uneven chunks balance. n ≤ grain runs inline.
func parallelFor(threads, n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	if threads <= 1 || n <= grain {
		fn(0, n)
		return
	}
	// Chunk size: at least grain, about 4 chunks per thread.
	size := max(grain, (n+4*threads-1)/(4*threads))
	chunks := (n + size - 1) / size
	if chunks == 1 {
		fn(0, n)
		return
	}
	poolOnce.Do(startPool)
	j := &job{fn: fn, n: n, grain: size, chunks: int64(chunks)}
	j.wg.Add(chunks)
	helpers := min(threads, chunks) - 1
	for range helpers {
		select {
		case poolCh <- j:
		default: // pool saturated: the caller does the work
		}
	}
	j.run()
	j.wg.Wait()
	if j.failed.Load() {
		panic(j.pval) // in the caller's goroutine, where Pipeline.Run recovers it
	}
}
