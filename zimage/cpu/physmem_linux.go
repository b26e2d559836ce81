package cpu

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// physicalMemory returns the memory this process may use in bytes: the
// machine's RAM, or the cgroup's limit when that is lower (containers), 0
// when unknown.
func physicalMemory() uint64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	ram := uint64(si.Totalram) * uint64(si.Unit)
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if lim, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && lim > 0 && lim < ram {
			ram = lim
		}
	}
	return ram
}
