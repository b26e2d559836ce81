package zimage

// WithMemoryBudget caps the device memory the pipeline uses, in bytes (0:
// no cap beyond the device's free memory). The residency planner keeps every
// request's predicted peak under it, and the CUDA backend refuses any
// allocation past it. A request that cannot fit is a *MemoryError; the
// pipeline stays usable.
func WithMemoryBudget(bytes uint64) Option { return func(o *options) { o.budget = bytes } }
