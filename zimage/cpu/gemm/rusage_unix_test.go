//go:build unix

package gemm

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time: GFLOP per CPU-second is a
// tuning metric that other load on a shared machine disturbs much less than
// wall-clock GFLOP/s.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
