//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package weights

import (
	"fmt"
	"math"
	"os"
	"syscall"
)

// mapData maps the whole file read-only and returns the data area (from
// dataOff) and the full mapping.
func mapData(f *os.File, size, dataOff int64) (data, mapping []byte, err error) {
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to map", size)
	}
	mapping, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return mapping[dataOff:size:size], mapping, nil
}

func unmap(mapping []byte) error { return syscall.Munmap(mapping) }
