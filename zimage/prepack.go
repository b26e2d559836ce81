package zimage

import "github.com/zimage/zimage/zimage/cpu"

// WithPackBudget bounds the memory the CPU backend in BFloat16 precision
// spends on pre-packed weights (cpu.WithPackBudget): the DiT's weights,
// used every step, are kept in the GEMM kernel's panel layout from their
// third use in a request on (from the tenth in the first request, so that
// a one-shot 8-step generation does not pay fresh memory for packs it
// would barely use), which saves re-packing them in every product (the
// text encoder and the VAE are never packed). 0 turns it off; a
// negative value, like no option, selects the default, a quarter of
// physical memory (or of a lower cgroup limit). Results are the same bits
// either way.
func WithPackBudget(bytes int64) Option {
	return func(o *options) { o.packBudget = &bytes }
}

// packOption is the CPU backend's option for WithPackBudget.
func (o *options) packOption() cpu.Option {
	if o.packBudget == nil {
		return func(*cpu.Backend) {}
	}
	return cpu.WithPackBudget(*o.packBudget)
}
