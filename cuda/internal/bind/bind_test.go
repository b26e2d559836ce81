package bind

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestOpenErrorNamesItsLibrary opens missing libraries from many goroutines
// at once: every error must carry its own library's dlerror text. Without
// the thread lock, purego's dlerror call could run on another OS thread and
// return an empty or a foreign message.
func TestOpenErrorNamesItsLibrary(t *testing.T) {
	dir := t.TempDir()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0))))
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				name := filepath.Join(dir, fmt.Sprintf("libmissing-%d-%d.so", g, i))
				_, _, err := Open(name)
				if err == nil {
					errs <- name + ": opened"
					return
				}
				if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "No such file") {
					errs <- fmt.Sprintf("%s: error %q lacks its own reason", name, msg)
					return
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestOpenNoNames(t *testing.T) {
	if _, _, err := Open(); err == nil {
		t.Fatal("Open() with no names succeeded")
	}
}
