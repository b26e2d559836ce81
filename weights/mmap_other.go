//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package weights

import (
	"fmt"
	"io"
	"math"
	"os"
)

// mapData is the fallback for platforms without syscall.Mmap (Windows,
// Plan 9, wasm, ...): it reads the data area into memory with ReadAt, so a
// checkpoint costs its full size in heap. Header validation is unchanged.
func mapData(f *os.File, size, dataOff int64) (data, mapping []byte, err error) {
	n := size - dataOff
	if n > math.MaxInt {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to read", size)
	}
	data = make([]byte, n)
	if _, err := f.ReadAt(data, dataOff); err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return data, nil, nil
}

func unmap([]byte) error { return nil }
