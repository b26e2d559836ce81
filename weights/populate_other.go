//go:build !linux

package weights

// populate is a no-op where MADV_POPULATE_READ is unavailable.
func populate([]byte) {}
