//go:build !windows

package bind

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/ebitengine/purego"
)

// DlsymLookup returns a Lookup on a dlopen handle.
func DlsymLookup(handle uintptr) Lookup {
	return func(name string) (uintptr, error) { return purego.Dlsym(handle, name) }
}

// dlopen opens one library. dlerror's message is thread-local: purego reads
// it in a second call, and a goroutine that moved to another OS thread in
// between got another thread's (usually empty) message, so both calls run
// on one locked thread. An empty message still gets a reason that names the
// library.
func dlopen(name string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err == nil {
		return h, nil
	}
	msg := strings.TrimSpace(err.Error())
	switch {
	case msg == "":
		return 0, fmt.Errorf("dlopen %s failed (no dlerror message)", name)
	case !strings.Contains(msg, name):
		return 0, fmt.Errorf("dlopen %s: %s", name, msg)
	}
	return 0, err
}
