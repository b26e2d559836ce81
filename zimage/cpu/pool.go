package cpu

import (
	"sync"
	"sync/atomic"

	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// Parallel loops run on gemm's worker pool (gemm.Offer), shared with the
// GEMMs so that one set of helpers, kept awake briefly between loops, serves
// the whole chain of ops. A parallel loop never waits for a helper that has
// not started, only for chunks that were claimed, so nested loops (an op
// whose chunks call another parallel routine) cannot deadlock: the caller
// runs whatever no idle worker picked up.
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
	j := &job{fn: fn, n: n, grain: size, chunks: int64(chunks)}
	j.wg.Add(chunks)
	helpers := min(threads, chunks) - 1
	for range helpers {
		if !gemm.Offer(threads-1, j.run) {
			break // pool saturated: the caller does the work
		}
	}
	j.run()
	j.wg.Wait()
	if j.failed.Load() {
		panic(j.pval) // in the caller's goroutine, where Pipeline.Run recovers it
	}
}
