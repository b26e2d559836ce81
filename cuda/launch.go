package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/zimage/zimage/cuda/driver"
)

// kernel is a resolved kernel with its parameter signature (see
// kernels.Signatures).
type kernel struct {
	name string
	fn   driver.Function
	sig  string
}

// maxArgs bounds a kernel's parameter count.
const maxArgs = 24

// launcher builds cuLaunchKernel parameter arrays in a pinned arena without
// allocating: slots [0, maxArgs) hold pointers to the value slots
// [maxArgs, 2·maxArgs), which are written fresh for each launch. A value
// narrower than 8 bytes sits in the low bytes of its slot (little-endian), as
// the driver copies exactly the parameter's size.
type launcher struct {
	arena []uint64
	pin   runtime.Pinner
	kinds [maxArgs]byte
	n     int
}

func newLauncher() *launcher {
	l := &launcher{arena: make([]uint64, 2*maxArgs)}
	l.pin.Pin(&l.arena[0])
	for i := range maxArgs {
		l.arena[i] = uint64(uintptr(unsafe.Pointer(&l.arena[maxArgs+i])))
	}
	return l
}

func (l *launcher) close() { l.pin.Unpin() }

func (l *launcher) reset() *launcher { l.n = 0; return l }

func (l *launcher) put(kind byte, v uint64) *launcher {
	if l.n < maxArgs {
		l.arena[maxArgs+l.n] = v
		l.kinds[l.n] = kind
	}
	l.n++
	return l
}

// p appends a device pointer (or 0 for a null pointer).
func (l *launcher) p(v driver.DevicePtr) *launcher { return l.put('p', uint64(v)) }

// i appends a 32-bit integer.
func (l *launcher) i(v int) *launcher { return l.put('i', uint64(uint32(int32(v)))) }

// f appends a float32.
func (l *launcher) f(v float32) *launcher { return l.put('f', uint64(math.Float32bits(v))) }

// sigMismatch reports whether the packed arguments differ from sig.
func (l *launcher) sigMismatch(sig string) bool {
	if l.n != len(sig) || l.n > maxArgs {
		return true
	}
	for i := 0; i < l.n; i++ {
		if l.kinds[i] != sig[i] {
			return true
		}
	}
	return false
}

type dim3 struct{ x, y, z uint32 }

// launch enqueues k on the device stream with the arguments packed since the
// last reset. A packing that does not match the kernel's PTX signature is an
// error, never a launch.
func (d *Device) launch(k *kernel, grid, block dim3, smem uint32) error {
	if k == nil {
		return fmt.Errorf("cuda: launch of a kernel missing from the fatbin")
	}
	l := d.args
	if l.sigMismatch(k.sig) {
		return fmt.Errorf("cuda: %s: arguments %q do not match the kernel's parameters %q", k.name, string(l.kinds[:min(l.n, maxArgs)]), k.sig)
	}
	r := d.api.Launch.LaunchKernel(k.fn, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, d.stream, unsafe.Pointer(&l.arena[0]))
	if r != driver.Success {
		return fmt.Errorf("%w (kernel %s, grid %v, block %v, smem %d)", d.api.Check("cuLaunchKernel", r), k.name, grid, block, smem)
	}
	return nil
}

// gridFor returns a 1-D grid-stride launch for n elements: d.block threads
// per block, at most 32 blocks per SM (the kernels loop over the rest).
func (d *Device) gridFor(n int) (dim3, dim3) {
	bs := d.block
	blocks := (n + bs - 1) / bs
	blocks = max(1, min(blocks, 32*max(d.props.SMs, 1)))
	return dim3{uint32(blocks), 1, 1}, dim3{uint32(bs), 1, 1}
}

// threads returns the 1-D block of d.block threads used by the row kernels.
func (d *Device) threads() dim3 { return dim3{uint32(d.block), 1, 1} }
