//go:build !amd64 || purego

package cpu

// sqDevRun returns Σ (x-mu)² as Σ over consecutive sumBlockLen blocks of
// sqDevBlock(block, mu), in block order.
func sqDevRun(x []float32, mu float32) float64 {
	var s float64
	for i := 0; i < len(x); i += sumBlockLen {
		s += sqDevBlock(x[i:min(i+sumBlockLen, len(x))], mu)
	}
	return s
}
