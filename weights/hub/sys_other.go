//go:build !linux && !darwin && !freebsd

package hub

import (
	"errors"
	"os"
	"syscall"
)

// lockFile only creates the lock file on platforms without flock; concurrent
// processes rely on the atomic rename of the finished blob.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

func freeSpace(string) int64 { return -1 }

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
