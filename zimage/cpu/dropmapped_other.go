//go:build !linux

package cpu

// dropMapped is a no-op where the pages are not dropped (see the Linux
// version).
func dropMapped([]byte) {}
