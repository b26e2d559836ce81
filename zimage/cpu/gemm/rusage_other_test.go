//go:build !unix

package gemm

import "time"

// cpuTime is 0 where getrusage is missing: the per-CPU-second figures are
// then not reported meaningfully.
func cpuTime() time.Duration { return 0 }
