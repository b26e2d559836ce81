//go:build windows

package bind

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// DlsymLookup returns a Lookup on a LoadLibrary handle.
func DlsymLookup(handle uintptr) Lookup {
	return func(name string) (uintptr, error) {
		return windows.GetProcAddress(windows.Handle(handle), name)
	}
}

// dlopen opens one library (a DLL name or path) with LoadLibrary.
func dlopen(name string) (uintptr, error) {
	h, err := windows.LoadLibrary(name)
	if err != nil {
		return 0, fmt.Errorf("LoadLibrary %s: %w", name, err)
	}
	return uintptr(h), nil
}
