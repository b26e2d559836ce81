//go:build !amd64 || purego

package cpu

func scaleRow(dst, src []float32, s float32)         { scaleRowGo(dst, src, s) }
func scaleMulRow(dst, src, w []float32, s float32)   { scaleMulRowGo(dst, src, w, s) }
func scaleShiftRow(dst, src []float32, s, c float32) { scaleShiftRowGo(dst, src, s, c) }
func addRow(dst, a, c []float32)                     { addRowGo(dst, a, c) }
func mulRow(dst, a, c []float32)                     { mulRowGo(dst, a, c) }
func gatedAddRow(dst, a, g, c []float32)             { gatedAddRowGo(dst, a, g, c) }
func ropePairs(dst, src, co, si []float32)           { ropePairsGo(dst, src, co, si) }
func ropeHalves(dlo, dhi, a, c, co, si []float32)    { ropeHalvesGo(dlo, dhi, a, c, co, si) }
func dupPairs(dst, src []float32)                    { dupPairsGo(dst, src) }
func dupPairs2(dst0, dst1, src []float32)            { dupPairs2Go(dst0, dst1, src) }
