//go:build windows

package openblas

import "golang.org/x/sys/windows"

func init() {
	Candidates = append([]string{"libopenblas.dll", "openblas.dll"}, Candidates...)
}

func dlopen(path string) (uintptr, error) {
	h, err := windows.LoadLibrary(path)
	return uintptr(h), err
}

func dlsym(h uintptr, name string) (uintptr, error) {
	return windows.GetProcAddress(windows.Handle(h), name)
}

func dlclose(h uintptr) { _ = windows.FreeLibrary(windows.Handle(h)) }
