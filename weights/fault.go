package weights

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/zimage/zimage/internal/pages"
)

// FaultError reports a memory fault while reading mapped tensor data: the
// file was truncated or replaced in place while mapped. Without
// debug.SetPanicOnFault the process would die of SIGBUS; goroutines that
// read mapped weights set it, and turn the fault into this error with
// FaultFrom.
type FaultError struct {
	File string  // the mapped file the address belongs to ("" if unknown)
	Addr uintptr // the faulting address
}

func (e *FaultError) Error() string {
	file := e.File
	if file == "" {
		file = "a mapped weight file"
	}
	return fmt.Sprintf("weights: %s: memory fault reading the mapped file at %#x: it was truncated or replaced while in use; restore it and reload the model", file, e.Addr)
}

// mappings are the live mappings of OpenFile, for naming a fault's file.
var (
	mappingsMu sync.Mutex
	mappings   = map[uintptr]mappedRange{} // by start address
)

type mappedRange struct {
	end  uintptr
	path string
}

func registerMapping(mapping []byte, path string) {
	if len(mapping) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(mapping)))
	mappingsMu.Lock()
	mappings[start] = mappedRange{end: start + uintptr(len(mapping)), path: path}
	mappingsMu.Unlock()
}

func unregisterMapping(mapping []byte) {
	if len(mapping) == 0 {
		return
	}
	mappingsMu.Lock()
	delete(mappings, uintptr(unsafe.Pointer(unsafe.SliceData(mapping))))
	mappingsMu.Unlock()
}

// MappedFile names the mapped file that holds addr, if any.
func MappedFile(addr uintptr) (string, bool) {
	mappingsMu.Lock()
	defer mappingsMu.Unlock()
	for start, r := range mappings {
		if addr >= start && addr < r.end {
			return r.path, true
		}
	}
	return "", false
}

// FaultFrom turns a recovered panic value into a *FaultError when it is a
// memory fault (a runtime.Error with the faulting address, which Go raises
// instead of crashing in a goroutine with debug.SetPanicOnFault set), or
// already one; it returns nil for any other value, which the caller should
// re-panic.
func FaultFrom(v any) *FaultError {
	switch e := v.(type) {
	case *FaultError:
		return e
	case runtime.Error:
		a, ok := e.(interface{ Addr() uintptr })
		if !ok {
			return nil
		}
		fe := &FaultError{Addr: a.Addr()}
		fe.File, _ = MappedFile(fe.Addr)
		return fe
	}
	return nil
}

// DropMapped drops the whole pages of b from the process's resident set
// when b lies in a checkpoint file mapping (MappedFile): the mapping is
// read-only, so the pages fault in again from the page cache if read later.
// Bytes outside a mapping (heap copies) are left alone; a no-op off Linux.
func DropMapped(b []byte) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if _, ok := MappedFile(start); !ok {
		return
	}
	if _, ok := MappedFile(start + uintptr(len(b)) - 1); !ok {
		return
	}
	pages.DropBytes(b)
}
