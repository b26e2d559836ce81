package cpu

import (
	"math"
	"testing"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// TestReserve checks the pre-faulted reserve: allocs that miss the pool
// take disjoint, 64-byte-spaced pieces of it in order; a request larger
// than what is left gets fresh memory; pieces are ordinary pool buffers
// once released; TrimToCap ends the reserve without disturbing the pieces
// still in use (their data survives the tail's pages being dropped).
func TestReserve(t *testing.T) {
	const mib = 1 << 20
	b := New(WithPoolBytes(64 * mib))
	b.Reserve(8 * mib) // 2 Mi floats
	if len(b.reserve) != 2<<20 {
		t.Fatalf("reserve holds %d floats, want %d", len(b.reserve), 2<<20)
	}
	slab := unsafe.Pointer(unsafe.SliceData(b.reserve))
	at := func(x []float32) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(x))) - uintptr(slab) }

	x := b.alloc(1000) // piece [0, 1008)
	y := b.alloc(500)  // piece [1008, 1520)
	if at(x) != 0 || len(x) != 1000 || cap(x) != 1008 {
		t.Fatalf("first piece at %d len %d cap %d", at(x), len(x), cap(x))
	}
	if at(y) != 4*1008 || cap(y) != 512 {
		t.Fatalf("second piece at %d cap %d, want %d and 512", at(y), cap(y), 4*1008)
	}
	big := b.alloc(3 << 20)      // more than is left: fresh memory
	if p := at(big); p < 8*mib { // (wraps around when big lies below the slab)
		t.Fatal("a request larger than the reserve's rest was carved from it")
	}
	b.release(big)
	z := b.alloc(1 << 20) // 4 MiB: fits what is left
	if at(z) != 4*1520 {
		t.Fatalf("third piece at %d, want %d", at(z), 4*1520)
	}
	for i := range x {
		x[i] = float32(i)
	}
	b.release(y)
	if got := b.alloc(500); &got[0] != &y[0] {
		t.Fatal("a released piece was not reused from the pool")
	}
	b.TrimToCap()
	if b.reserve != nil {
		t.Fatal("TrimToCap kept the reserve")
	}
	for i := range x {
		if x[i] != float32(i) {
			t.Fatalf("piece data changed after TrimToCap: x[%d] = %v", i, x[i])
		}
	}
	b.release(x)
	b.release(z)
	if got := b.alloc(2 << 20); len(got) != 2<<20 {
		t.Fatal("alloc after the reserve ended failed")
	}

	// The reserve never exceeds the pool cap; a zero cap reserves nothing.
	small := New(WithPoolBytes(4096))
	small.Reserve(1 << 30)
	if len(small.reserve) != 1024 {
		t.Fatalf("reserve of %d floats over a 4 KiB cap", len(small.reserve))
	}
	small.Trim()
	if small.reserve != nil {
		t.Fatal("Trim kept the reserve")
	}
	off := New(WithPoolBytes(0))
	off.Reserve(1 << 20)
	if off.reserve != nil {
		t.Fatal("WithPoolBytes(0) reserved memory")
	}
}

// TestEagerConvWeights checks SetEagerConvWeights: while on, Weight expands
// 3×3 kernels (not 1×1 ones, nor any weight while off) to the float32 values
// the lazy path caches, and a convolution's result is the same either way.
func TestEagerConvWeights(t *testing.T) {
	vals := make([]float32, 4*3*3*3)
	for i := range vals {
		vals[i] = float32(i%7) * 0.37
	}
	w3, exact := weightOf(vals, weights.BF16, 4, 3, 3, 3)
	w1, _ := weightOf(vals[:12], weights.BF16, 4, 3, 1, 1)
	x := make([]float32, 3*5*6)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	conv := func(eager bool) []float32 {
		b := New()
		b.SetEagerConvWeights(eager)
		k3, k1 := b.Weight(w3).(*Tensor), b.Weight(w1).(*Tensor)
		b.SetEagerConvWeights(false)
		if got := k3.f32 != nil; got != eager || k1.f32 != nil {
			t.Fatalf("eager %v: 3×3 expanded %v, 1×1 expanded %v (want %v, false)", eager, got, k1.f32 != nil, eager)
		}
		for i := range exact {
			if eager && k3.f32[i] != exact[i] {
				t.Fatalf("expanded value %d = %v, want %v", i, k3.f32[i], exact[i])
			}
		}
		if b.Weight(w3).(*Tensor).f32 != nil {
			t.Fatal("a weight was expanded after eager expansion was turned off")
		}
		return host(t, b, b.Conv2D(b.FromHost(x, 3, 5, 6), k3, nil, 1))
	}
	lazy, eager := conv(false), conv(true)
	for i := range lazy {
		if math.Float32bits(lazy[i]) != math.Float32bits(eager[i]) {
			t.Fatalf("conv output %d: %v eager, %v lazy", i, eager[i], lazy[i])
		}
	}
}
