package sampler

import (
	"math"
	"runtime"
	"sync"
	"testing"
)

// logAVX2Ref is the one-lane reference of log8, with the exact fma32.
func logAVX2Ref(x float32) float32 {
	e, m := logReduce(x)
	z := float32(m * m)
	y := float32(cephesLogP0)
	for _, p := range logPoly {
		y = fma32(y, m, p)
	}
	y = float32(y * m)
	y = fma32(y, z, float32(e*cephesLogQ1))
	y = fma32(-z, 0.5, y)
	return fma32(e, cephesLogQ2, m+y)
}

// sincosAVX2Ref is the one-lane reference of sincos8, with the exact fma32.
func sincosAVX2Ref(theta float32) (sin, cos float32) {
	j, yj := sincosOctant(theta)
	x := fma32(yj, -cephesDP1, theta)
	x = fma32(yj, -cephesDP2, x)
	x = fma32(yj, -cephesDP3, x)
	z := float32(x * x)
	c := fma32(fma32(coscofP0, z, coscofP1), z, coscofP2)
	c = float32(c * z)
	c = fma32(c, z, -float32(z*0.5))
	c = c + 1
	s := fma32(fma32(sincofP0, z, sincofP1), z, sincofP2)
	s = float32(s * z)
	s = fma32(s, x, x)
	return sincosSelect(j, s, c)
}

// TestCephesKernelsAllInputs runs log8 and sincos8 on every argument the
// AVX2 normal kernel can give them, u1 = 1 - k·2^-24 and θ = float32(2π)·k·2^-24
// for k < 2^24, and compares them with the exact-FMA reference. (With -short,
// every 97th k.)
func TestCephesKernelsAllInputs(t *testing.T) {
	stride := 1
	if testing.Short() {
		stride = 97
	}
	const n = 1 << 24
	workers := runtime.GOMAXPROCS(0)
	var mu sync.Mutex
	var bad int
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var u1, theta [8]float32
			var ks [8]int
			local := 0
			lane := 0
			flush := func() {
				lg := log8(&u1)
				sin, cos := sincos8(&theta)
				for l := 0; l < lane; l++ {
					rs, rc := sincosAVX2Ref(theta[l])
					if math.Float32bits(lg[l]) != math.Float32bits(logAVX2Ref(u1[l])) ||
						math.Float32bits(sin[l]) != math.Float32bits(rs) || math.Float32bits(cos[l]) != math.Float32bits(rc) {
						if local < 3 {
							t.Errorf("k=%d: log8 %v (ref %v), sincos8 %v %v (ref %v %v)",
								ks[l], lg[l], logAVX2Ref(u1[l]), sin[l], cos[l], rs, rc)
						}
						local++
					}
				}
				lane = 0
			}
			for k := w * stride; k < n; k += workers * stride {
				u := float32(k) * 0x1p-24
				u1[lane], theta[lane], ks[lane] = 1-u, float32(twoPiF32*u), k
				if lane++; lane == 8 {
					flush()
				}
			}
			for l := lane; l < 8; l++ {
				u1[l], theta[l] = 1, 0
			}
			flush()
			mu.Lock()
			bad += local
			mu.Unlock()
		}()
	}
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d inputs differ", bad)
	}
}
