//go:build !linux

package weights

// dontNeed is a no-op where syscall.Madvise is unavailable.
func dontNeed([]byte) {}
