// Package hostshim compiles the CUDA kernels of cuda/kernels for the CPU with
// g++ and the thread-per-CUDA-thread shim in cuda/kernels/testdata, loads the
// result with purego and launches kernels on it, so tests run the kernels
// without a GPU. The tensor-core kernels (zk_tc_*) run too: their inline-PTX
// helpers (ldmatrix, mma.sync, cvt, cp.async) have host versions that
// emulate the instructions' warp-level semantics; the PTX text itself only
// ever runs on a GPU.
package hostshim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/zimage/zimage/cuda/internal/bind"
	"github.com/zimage/zimage/cuda/kernels"
)

// ErrNoCompiler means g++ is not installed; tests skip.
var ErrNoCompiler = errors.New("hostshim: g++ not found")

// Lib is the loaded shim library.
type Lib struct {
	handle      uintptr
	launch      uintptr
	setCopyMode uintptr
	setSchedule uintptr
	thunks      map[string]uintptr
}

var (
	once   sync.Once
	shared *Lib
	err    error
)

// Load builds (or reuses a cached build of) the shim library. The build is
// cached under the user cache directory keyed by the sources' hash.
func Load() (*Lib, error) {
	once.Do(func() { shared, err = build() })
	return shared, err
}

func kernelDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "kernels")
}

// Names returns the kernels the shim provides (every kernel of the fatbin),
// sorted.
func Names() []string {
	var names []string
	for n := range kernels.Signatures() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func build() (*Lib, error) {
	gxx, lerr := exec.LookPath("g++")
	if lerr != nil {
		return nil, ErrNoCompiler
	}
	dir := kernelDir()
	h := sha256.New()
	files, _ := filepath.Glob(filepath.Join(dir, "*.cu"))
	more, _ := filepath.Glob(filepath.Join(dir, "*.cuh"))
	files = append(files, more...)
	files = append(files, filepath.Join(dir, "testdata", "hostshim.h"), filepath.Join(dir, "testdata", "hostshim.cpp"))
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	names := Names()
	fmt.Fprintln(h, strings.Join(names, ","))
	key := hex.EncodeToString(h.Sum(nil))[:16]
	cache, cerr := os.UserCacheDir()
	if cerr != nil {
		cache = os.TempDir()
	}
	outDir := filepath.Join(cache, "zimage-hostshim")
	so := filepath.Join(outDir, "libzkshim-"+key+".so")
	if _, err := os.Stat(so); err != nil {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, err
		}
		var src strings.Builder
		fmt.Fprintf(&src, "#include %q\n#include %q\n#include %q\n",
			filepath.Join(dir, "testdata", "hostshim.h"), filepath.Join(dir, "testdata", "hostshim.cpp"), filepath.Join(dir, "all.cu"))
		for _, n := range names {
			fmt.Fprintf(&src, "extern \"C\" void %s__thunk(void** p) { zk_invoke(&%s, p); }\n", n, n)
		}
		tmp, err := os.MkdirTemp(outDir, "build")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		cpp := filepath.Join(tmp, "thunks.cpp")
		if err := os.WriteFile(cpp, []byte(src.String()), 0o644); err != nil {
			return nil, err
		}
		out := filepath.Join(tmp, "lib.so")
		cmd := exec.Command(gxx, "-std=c++20", "-O2", "-shared", "-fPIC", "-w", "-o", out, cpp)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("hostshim: g++ failed: %v\n%s", err, msg)
		}
		if err := os.Rename(out, so); err != nil {
			return nil, err
		}
	}
	handle, _, err := bind.Open(so)
	if err != nil {
		return nil, err
	}
	l := &Lib{handle: handle, thunks: map[string]uintptr{}}
	sym := bind.DlsymLookup(handle)
	if l.launch, err = sym("zk_launch"); err != nil {
		return nil, err
	}
	if l.setCopyMode, err = sym("zk_set_async_copy_mode"); err != nil {
		return nil, err
	}
	if l.setSchedule, err = sym("zk_set_schedule"); err != nil {
		return nil, err
	}
	for _, n := range names {
		p, err := sym(n + "__thunk")
		if err != nil {
			return nil, err
		}
		l.thunks[n] = p
	}
	return l, nil
}

// SetDeferredCopies makes the shim's cp.async copies land only when the
// issuing thread waits for their group (true), the latest a GPU may complete
// them, or at once (false, the default). Kernels that overlap copies with
// compute must give the same results either way.
func (l *Lib) SetDeferredCopies(deferred bool) {
	v := uintptr(0)
	if deferred {
		v = 1
	}
	purego.SyscallN(l.setCopyMode, v)
}

// Schedule is the order in which the shim runs a block's threads.
type Schedule int

const (
	// Lockstep runs every ready thread one step per round, warps in order
	// (the default).
	Lockstep Schedule = iota
	// WarpFirst runs each warp, first to last, until it waits at a block
	// barrier (or ends) before the next starts: one warp runs ahead of the
	// others, so a missing barrier before overwriting shared memory that
	// another warp still reads shows up as wrong results.
	WarpFirst
	// WarpLast is WarpFirst with the last warp first.
	WarpLast
)

// SetSchedule selects the thread order for later launches.
func (l *Lib) SetSchedule(s Schedule) { purego.SyscallN(l.setSchedule, uintptr(s)) }

// Thunk returns the entry point of kernel name (0 if the shim lacks it).
func (l *Lib) Thunk(name string) uintptr { return l.thunks[name] }

// Launch runs a kernel like cuLaunchKernel: params points at an array of
// pointers to the argument values. It returns 0 on success.
func (l *Lib) Launch(thunk uintptr, gx, gy, gz, bx, by, bz, smem uint32, params unsafe.Pointer) int {
	r, _, _ := purego.SyscallN(l.launch, thunk, uintptr(gx), uintptr(gy), uintptr(gz), uintptr(bx), uintptr(by), uintptr(bz), uintptr(smem), uintptr(params))
	return int(int32(uint32(r)))
}
