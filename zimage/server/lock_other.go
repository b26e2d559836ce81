//go:build !unix

package server

// lockDataDir is a no-op where flock is not available; run one server per
// data directory there.
func lockDataDir(string) (func(), error) { return func() {}, nil }
