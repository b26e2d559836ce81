package gemm

import (
	"context"
	"sync/atomic"
)

// watch returns a flag that is set once ctx is done, and the function that
// stops watching (never nil: callers release on every early return). It
// returns ctx.Err() when ctx is already done, and a nil flag when ctx can
// never be done (a nil ctx included), so such calls run exactly like the
// plain entry points.
func watch(ctx context.Context) (stop *atomic.Bool, release func() bool, err error) {
	if ctx == nil || ctx.Done() == nil {
		return nil, noRelease, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, noRelease, err
	}
	stop = new(atomic.Bool)
	// AfterFunc registers with the parent instead of starting a goroutine
	// for the standard contexts; release unregisters it.
	release = context.AfterFunc(ctx, func() { stop.Store(true) })
	return stop, release, nil
}

func noRelease() bool { return false }

// finish stops watching and turns an abandoned product into ctx.Err().
func finish(ctx context.Context, stop *atomic.Bool, release func() bool, err error) error {
	if stop == nil {
		return err
	}
	release()
	if err == nil && stop.Load() {
		return ctx.Err()
	}
	return err
}
