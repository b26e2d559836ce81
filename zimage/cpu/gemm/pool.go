package gemm

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

var threadSetting atomic.Int32

// SetThreads sets how many threads (the caller plus pool workers) one GEMM
// call uses; n <= 0 means runtime.GOMAXPROCS(0).
func SetThreads(n int) {
	if n < 0 {
		n = 0
	}
	threadSetting.Store(int32(min(n, 1<<16)))
}

func numThreads() int {
	if n := int(threadSetting.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// The shared worker pool: long-lived goroutines that pick up helper loops.
// A call never waits for a pool worker to become free — if none is idle, the
// caller simply does more of the (dynamically scheduled) work itself.
var (
	poolMu      sync.Mutex
	poolWorkers int
	poolJobs    = make(chan func())
)

func ensureWorkers(n int) {
	poolMu.Lock()
	defer poolMu.Unlock()
	for ; poolWorkers < n; poolWorkers++ {
		go func() {
			// Workers read mapped weights: a fault is a panic (recorded by
			// parallelFor's loop), not a crash. Set once for the goroutine's life.
			debug.SetPanicOnFault(true)
			for job := range poolJobs {
				job()
			}
		}()
	}
}

// parallelFor runs fn(worker, task) for task in [0, ntasks) on up to threads
// goroutines (the caller included), handing tasks out in order. worker is in
// [0, threads) and identifies per-goroutine scratch space. Once stop (which
// may be nil) is set, tasks not yet started are skipped: a cancelled call
// drains within one task per thread.
func parallelFor(threads, ntasks int, stop *atomic.Bool, fn func(worker, task int)) {
	threads = min(threads, ntasks)
	if threads <= 1 {
		for t := 0; t < ntasks; t++ {
			if stop != nil && stop.Load() {
				return
			}
			fn(0, t)
		}
		return
	}
	ensureWorkers(threads - 1)
	var next atomic.Int64
	var wg sync.WaitGroup
	// A task's panic (a memory fault reading a weight file truncated while
	// mapped, with SetPanicOnFault) stops the loop and is raised again in
	// the caller's goroutine once every helper is done.
	var failed atomic.Bool
	var pmu sync.Mutex
	var pval any
	loop := func(w int) {
		defer func() {
			if p := recover(); p != nil {
				pmu.Lock()
				if pval == nil {
					pval = p
				}
				pmu.Unlock()
				failed.Store(true)
			}
		}()
		for {
			t := int(next.Add(1) - 1)
			if t >= ntasks || (stop != nil && stop.Load()) || failed.Load() {
				return
			}
			fn(w, t)
		}
	}
	for w := 1; w < threads; w++ {
		wg.Add(1)
		job := func() { defer wg.Done(); loop(w) }
		select {
		case poolJobs <- job:
		default:
			wg.Done() // no idle worker: the caller covers its share
		}
	}
	loop(0)
	wg.Wait()
	if failed.Load() {
		panic(pval)
	}
}
