//go:build unix

package bench

import "syscall"

// cpuSeconds is the process's user+system CPU time: on a shared machine,
// work per CPU-second is steadier than work per wall second.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
