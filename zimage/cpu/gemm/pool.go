package gemm

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
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

// The shared worker pool: long-lived goroutines that pick up helper loops,
// for the GEMMs and (through Offer) zimage/cpu's element-wise loops, so one
// set of helpers serves the whole chain of ops. A call never waits for a
// helper to start — the wait groups count tasks, not helpers — so a queued
// helper that starts late finds the work done and returns at once, and the
// caller does whatever no helper picked up (nested loops cannot deadlock).
//
// Waking a parked helper costs 50–200 µs on the VMs measured (an OS thread
// woken per parallel loop, ~200 loops per DiT step), so a helper that runs
// out of work polls the queue for spinWait before parking, yielding its P
// at every poll so that it never delays runnable goroutines. 100 µs was too
// short: gaps of 0.1–1 ms (the caller finishing a product's last task, a
// short serial op) still parked the helper ~400 times in a 256² generation
// of the 262 M-parameter model; at 1 ms it parks a handful of times and a
// denoising step is ~1–2% faster (step-by-step alternation, 2-vCPU Zen 4).
var (
	poolMu      sync.Mutex
	poolWorkers atomic.Int32
	poolJobs    = make(chan func(), 256)
	spinWait    = time.Millisecond
)

func ensureWorkers(n int) {
	if int(poolWorkers.Load()) >= n {
		return
	}
	poolMu.Lock()
	defer poolMu.Unlock()
	for ; int(poolWorkers.Load()) < n; poolWorkers.Add(1) {
		go func() {
			// Workers read mapped weights: a fault is a panic (recorded by
			// the loop that runs it), not a crash. Set once for the
			// goroutine's life.
			debug.SetPanicOnFault(true)
			for {
				nextJob()()
			}
		}()
	}
}

// nextJob returns the next queued helper job, polling for spinWait before
// parking on the queue.
func nextJob() func() {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case job := <-poolJobs:
			return job
		default:
		}
		if i == 0 {
			start = time.Now()
		} else if i%16 == 0 && time.Since(start) > spinWait {
			return <-poolJobs
		}
		runtime.Gosched()
	}
}

// Offer queues job for a pool helper, starting up to workers helpers, and
// reports whether it was queued (false when the queue is full: the caller
// does the work itself). job must tolerate starting late, after the work it
// helps with is finished.
func Offer(workers int, job func()) bool {
	ensureWorkers(workers)
	select {
	case poolJobs <- job:
		return true
	default:
		return false
	}
}

// parallelFor runs fn(worker, task) for task in [0, ntasks) on up to threads
// goroutines (the caller included), handing tasks out in order. worker is in
// [0, threads) and identifies per-goroutine scratch space. Once stop (which
// may be nil) is set, tasks not yet started are skipped: a cancelled call
// drains within one task per thread.
func parallelFor(threads, ntasks int, stop *atomic.Bool, fn func(worker, task int)) {
	parallelForTail(threads, ntasks, stop, fn, nil)
}

// parallelForTail is parallelFor in which a goroutine that finds no task
// left runs tail(worker, busy) before it returns; busy reports whether
// tasks are still running (tail should return once it is false).
func parallelForTail(threads, ntasks int, stop *atomic.Bool, fn func(worker, task int), tail func(worker int, busy func() bool)) {
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
	var next, left atomic.Int64
	left.Store(int64(ntasks))
	var wg sync.WaitGroup
	wg.Add(ntasks)
	// A task's panic (a memory fault reading a weight file truncated while
	// mapped, with SetPanicOnFault) stops the loop and is raised again in
	// the caller's goroutine once every claimed task is done.
	var failed atomic.Bool
	var pmu sync.Mutex
	var pval any
	record := func() {
		if p := recover(); p != nil {
			pmu.Lock()
			if pval == nil {
				pval = p
			}
			pmu.Unlock()
			failed.Store(true)
		}
	}
	task := func(w, t int) {
		defer wg.Done()
		defer left.Add(-1)
		defer record()
		fn(w, t)
	}
	busy := func() bool { return left.Load() > 0 && !failed.Load() }
	loop := func(w int) {
		for {
			t := int(next.Add(1) - 1)
			if t >= ntasks {
				break
			}
			if (stop != nil && stop.Load()) || failed.Load() {
				left.Add(-1)
				wg.Done()
				continue
			}
			task(w, t)
		}
		if tail != nil {
			func() {
				defer record()
				tail(w, busy)
			}()
		}
	}
	for w := 1; w < threads; w++ {
		Offer(threads-1, func() { loop(w) })
	}
	loop(0)
	wg.Wait()
	if failed.Load() {
		panic(pval)
	}
}
