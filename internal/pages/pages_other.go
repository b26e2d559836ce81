//go:build !linux

package pages

// Drop is a no-op here: an unused reserve tail is freed with its slab.
func Drop([]float32) {}

// DropBytes is a no-op where syscall.Madvise is unavailable.
func DropBytes([]byte) {}
