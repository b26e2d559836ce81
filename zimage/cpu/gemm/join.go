package gemm

import (
	"runtime"
	"sync/atomic"
)

// A product's parallel region ends when its last task does. Tasks are
// whole B blocks swept against every row of the A block, so the thread
// that draws no more tasks used to wait for the other's last one — about
// half a task per region, ~6% of the helper's time in a 256² denoising
// step. Instead, a task opens its macro on the region's joinBoard and
// hands out its micro-panel rows through a rowCursor; a thread that runs
// out of tasks takes rows from an open macro until none is left. Every C
// tile is still one kernel call on the same panels, so the bits do not
// depend on who computes it.

// rowCursor hands out the micro-panel rows of one macro.
type rowCursor struct{ next atomic.Int64 }

// claimDiv and claimMax size a claim: a quarter of the micro-panels left,
// at most claimMax of them, at least one. A locked add waits for the
// thread's pending stores (the C tile the kernel just wrote) to drain; one
// per micro-panel was ~3.9% of a 256² denoising step on Zen 5 (perf). The
// owner of a 54-panel macro now claims 15 times, not 54, and a thread that
// joins late still finds a quarter of what is left.
const (
	claimDiv = 4
	claimMax = 8
)

// claim returns the next rows [lo, hi) of an mb-row block, whole mr-row
// micro-panels but the block's last; lo ≥ mb when none are left.
func (c *rowCursor) claim(mr, mb int) (lo, hi int) {
	left := (mb - int(c.next.Load())) / mr
	g := mr * min(claimMax, max(1, left/claimDiv))
	lo = int(c.next.Add(int64(g))) - g
	return lo, min(lo+g, mb)
}

// joinable is a task's macro that other threads may help with.
type joinable struct {
	cur    rowCursor
	active atomic.Int32     // threads inside run
	run    func(w int) bool // computes rows from cur with worker w's scratch; whether it did any
}

// enter runs rows of j for worker w, counted in active so that close
// waits for them, also when they panic.
func (j *joinable) enter(w int) bool {
	j.active.Add(1)
	defer j.active.Add(-1)
	if !j.run(w) {
		return false
	}
	joined.Add(1)
	return true
}

// joined and oneRegions count the macros helped and the one-region
// products (tests check that their paths ran).
var joined, oneRegions atomic.Int64

// joinBoard is a region's open macros, one slot per worker.
type joinBoard struct {
	slots []atomic.Pointer[joinable]
}

// newJoinBoard returns a board for a region of threads goroutines, or nil
// (no joining) for one thread or with useJoin off.
func newJoinBoard(threads int) *joinBoard {
	if threads <= 1 || !useJoin {
		return nil
	}
	return &joinBoard{slots: make([]atomic.Pointer[joinable], threads)}
}

// useJoin enables joining (tests compare against it off).
var useJoin = true

// open publishes worker w's macro j.
func (jb *joinBoard) open(w int, j *joinable) { jb.slots[w].Store(j) }

// close withdraws w's macro once its own loop found no rows left, and
// waits for the threads still computing rows of it: the task's B block
// and scratch are reused as soon as it returns. A thread that enters j
// after this finds its cursor spent and touches nothing.
func (jb *joinBoard) close(w int, j *joinable) {
	jb.slots[w].Store(nil)
	for j.active.Load() != 0 {
		runtime.Gosched()
	}
}

// help computes rows of other workers' open macros for worker w while busy
// (tasks of the region still run).
func (jb *joinBoard) help(w int, busy func() bool) {
	for busy() {
		did := false
		for i := range jb.slots {
			if i == w {
				continue
			}
			if j := jb.slots[i].Load(); j != nil && j.enter(w) {
				did = true
			}
		}
		if !did {
			runtime.Gosched()
		}
	}
}

// parallelForJoin is parallelFor whose goroutines, once out of tasks, help
// the tasks still running through jb (nil: they do not).
func parallelForJoin(threads, ntasks int, stop *atomic.Bool, fn func(worker, task int), jb *joinBoard) {
	if jb == nil {
		parallelFor(threads, ntasks, stop, fn)
		return
	}
	parallelForTail(threads, ntasks, stop, fn, jb.help)
}
