package cuda

import (
	"errors"
	"fmt"

	"github.com/zimage/zimage/cuda/driver"
)

// BudgetError reports an allocation that would take the backend's device
// memory past its configured budget. The backend stays usable.
type BudgetError struct {
	Requested uint64 // bytes asked for
	InUse     uint64 // bytes held when asked
	Budget    uint64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("cuda: device memory budget exceeded: %d B requested with %d B in use, budget %d B", e.Requested, e.InUse, e.Budget)
}

// ErrOutOfMemory matches (errors.Is) a failed device allocation, whether the
// driver ran out of memory or the budget was exceeded.
var ErrOutOfMemory = driver.ErrOutOfMemory

// Is makes errors.Is(err, ErrOutOfMemory) true for budget errors.
func (e *BudgetError) Is(target error) bool { return target == ErrOutOfMemory }

// memTracker is the arena's bookkeeping: every live allocation with its size,
// the bytes in use and their high-water mark.
type memTracker struct {
	live   map[driver.DevicePtr]uint64
	cur    uint64
	peak   uint64
	budget uint64 // 0 = none
	allocs int    // total allocations made (for tests)
}

// alloc allocates n bytes of device memory on the device's stream. On a
// driver out-of-memory it trims the pool and retries once.
func (d *Device) alloc(n uint64) (driver.DevicePtr, error) {
	m := &d.mem
	if n == 0 {
		n = 1
	}
	if m.budget > 0 && m.cur+n > m.budget {
		return 0, &BudgetError{Requested: n, InUse: m.cur, Budget: m.budget}
	}
	var p driver.DevicePtr
	try := func() driver.Result {
		if d.async {
			return d.api.MemAllocAsync(&p, n, d.stream)
		}
		return d.api.MemAlloc(&p, n)
	}
	r := try()
	if r == driver.ErrOutOfMemoryCode && d.async {
		// Freed blocks may still sit in the pool's cache or wait on the
		// stream: drain and trim, then retry once.
		d.api.StreamSynchronize(d.stream)
		d.api.MemPoolTrimTo(d.pool, 0)
		r = try()
	}
	name := "cuMemAlloc_v2"
	if d.async {
		name = "cuMemAllocAsync"
	}
	if err := d.api.Check(name, r); err != nil {
		return 0, fmt.Errorf("%w (%d B requested, %d B held by this backend)", err, n, m.cur)
	}
	if m.live == nil {
		m.live = map[driver.DevicePtr]uint64{}
	}
	m.live[p] = n
	m.cur += n
	m.allocs++
	m.peak = max(m.peak, m.cur)
	return p, nil
}

// free releases an allocation made by alloc (stream-ordered when pools are
// used, so it is safe while kernels that use it are still queued).
func (d *Device) free(p driver.DevicePtr) error {
	m := &d.mem
	n, ok := m.live[p]
	if !ok {
		return fmt.Errorf("cuda: free of unknown device pointer %#x", uint64(p))
	}
	delete(m.live, p)
	m.cur -= n
	if d.async {
		return d.api.Check("cuMemFreeAsync", d.api.MemFreeAsync(p, d.stream))
	}
	return d.api.Check("cuMemFree_v2", d.api.MemFree(p))
}

// freeAll releases every live allocation (Close).
func (m *memTracker) freeAll(d *Device) error {
	var errs []error
	for p := range m.live {
		errs = append(errs, d.free(p))
	}
	return errors.Join(errs...)
}
