package cuda

import (
	"time"

	"github.com/zimage/zimage/cuda/driver"
)

// Timer measures device time between two points of the backend's stream
// with CUDA events (what the GPU spent, not host wall time).
type Timer struct {
	b          *Backend
	start, end driver.Event
}

// StartTimer records a start event on the stream.
func (b *Backend) StartTimer() (*Timer, error) {
	t := &Timer{b: b}
	err := b.d.Do(func() error {
		api := b.d.api
		if err := api.Check("cuEventCreate", api.EventCreate(&t.start, driver.EventDefault)); err != nil {
			return err
		}
		if err := api.Check("cuEventCreate", api.EventCreate(&t.end, driver.EventDefault)); err != nil {
			api.EventDestroy(t.start)
			return err
		}
		return api.Check("cuEventRecord", api.EventRecord(t.start, b.d.stream))
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Stop records the end event, waits for it and returns the device time
// between start and end. The timer cannot be reused.
func (t *Timer) Stop() (time.Duration, error) {
	var ms float32
	err := t.b.d.Do(func() error {
		api := t.b.d.api
		defer api.EventDestroy(t.start)
		defer api.EventDestroy(t.end)
		if err := api.Check("cuEventRecord", api.EventRecord(t.end, t.b.d.stream)); err != nil {
			return err
		}
		if err := api.Check("cuEventSynchronize", api.EventSynchronize(t.end)); err != nil {
			return err
		}
		return api.Check("cuEventElapsedTime", api.EventElapsedTime(&ms, t.start, t.end))
	})
	return time.Duration(float64(ms) * float64(time.Millisecond)), err
}
