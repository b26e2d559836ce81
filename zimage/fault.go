package zimage

import (
	"context"
	"runtime/debug"

	"github.com/zimage/zimage/weights"
)

// runGuarded is run with memory faults turned into errors. The weights are
// mapped files: one truncated or rewritten in place while the pipeline is
// loaded would kill a long-running server with SIGBUS at the next read.
// With SetPanicOnFault (set here for this goroutine, and once in each CPU
// worker goroutine, whose faults are re-raised here) the fault is a panic
// that becomes this request's *weights.FaultError, naming the file; it is
// also recorded as the backend's sticky error. The pipeline stays usable:
// once the file is restored, the next Run works.
func (p *Pipeline) runGuarded(ctx context.Context, pl plan) (res *Result, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			fe := weights.FaultFrom(v)
			if fe == nil {
				panic(v)
			}
			if f, ok := p.b.(interface{ Fail(error) }); ok {
				f.Fail(fe)
			}
			p.log.Error("zimage: memory fault reading mapped weights", "file", fe.File, "err", fe)
			res, err = nil, fe
		}
	}()
	return p.run(ctx, pl)
}
