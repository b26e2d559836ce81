//go:build amd64 && !purego

package cpu

// sqDevBlocks4AVX512 stores the 16 lane sums of (x-mu)² of each of the four
// sumBlockLen blocks at x.
//
//go:noescape
func sqDevBlocks4AVX512(x *float32, mu float32, lanes *[4][16]float32)

// sqDevRun returns Σ (x-mu)² as Σ over consecutive sumBlockLen blocks of
// sqDevBlock(block, mu), in block order; with AVX-512 four whole blocks at a
// time (faster where x is in cache: on data streaming from memory the four
// streams cost the prefetcher about what the overlap gains).
func sqDevRun(x []float32, mu float32) float64 {
	var s float64
	i := 0
	if useAVX512 && sumBlockLen == 1024 {
		var lanes [4][16]float32
		for ; i+4*sumBlockLen <= len(x); i += 4 * sumBlockLen {
			sqDevBlocks4AVX512(&x[i], mu, &lanes)
			s = addBlockLanes(s, &lanes)
		}
	}
	for ; i < len(x); i += sumBlockLen {
		s += sqDevBlock(x[i:min(i+sumBlockLen, len(x))], mu)
	}
	return s
}

// addBlockLanes adds each block's lane total (summed in float64 in lane
// order, as sumBlock does) to s, block by block.
func addBlockLanes(s float64, lanes *[4][16]float32) float64 {
	for k := range lanes {
		var b float64
		for _, v := range lanes[k] {
			b += float64(v)
		}
		s += b
	}
	return s
}
