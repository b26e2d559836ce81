package cpu

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/zimage/zimage/zimage/compute"
)

var _ compute.Cancellable = (*Backend)(nil)

// watch is one SetContext registration: the request's context and a flag
// set once it is done. Long ops load the flag (one atomic load) between
// their units of work; a new registration gets a new flag, so a late
// callback of an old context cannot cancel the next request.
type watch struct {
	ctx     context.Context // nil: never done
	stop    atomic.Bool
	release func() bool
}

// never is the registration of a backend without a context.
var never = &watch{}

// SetContext makes ops observe ctx (see compute.Cancellable): once ctx is
// done, the GEMM stops between tasks, Attention between query blocks and
// Conv2D between row tiles, the backend records ctx.Err() as its sticky
// error, and later ops return placeholders until ResetErr. nil detaches.
func (b *Backend) SetContext(ctx context.Context) {
	w := never
	if ctx != nil && ctx.Done() != nil {
		w = &watch{ctx: ctx}
		if ctx.Err() != nil {
			w.stop.Store(true)
		} else {
			// AfterFunc registers with the parent context instead of
			// starting a goroutine; release undoes it.
			w.release = context.AfterFunc(ctx, func() { w.stop.Store(true) })
		}
	}
	if ctx != nil {
		b.packs.newRequest()
	}
	b.mu.Lock()
	old := b.watch
	b.watch = w
	b.mu.Unlock()
	if old != nil && old.release != nil {
		old.release()
	}
}

// current returns the registration ops check.
func (b *Backend) current() *watch {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.watch == nil {
		return never
	}
	return b.watch
}

// context returns the context to hand to gemm's Ctx entry points.
func (w *watch) context() context.Context {
	if w.ctx == nil {
		return context.Background()
	}
	return w.ctx
}

// cancelled reports whether w's context is done, recording its error.
func (b *Backend) cancelled(w *watch) bool {
	if !w.stop.Load() {
		return false
	}
	b.setErr(w.ctx.Err())
	return true
}

// opErr records the error of a gemm call made by op: the context's error
// as it is (so callers can match it with errors.Is), anything else wrapped.
func (b *Backend) opErr(op string, w *watch, err error) {
	if w.ctx != nil && err == w.ctx.Err() {
		b.setErr(err)
		return
	}
	b.setErr(fmt.Errorf("cpu: %s: %w", op, err))
}
