package imageproc

import "math"

// Resize scales an interleaved 8-bit image of ch channels from sw×sh to
// dw×dh with a Lanczos-3 filter the way Pillow's Image.resize(LANCZOS)
// does for 8-bit modes (VaeImageProcessor's default resample): separable
// passes, horizontal first, each rounding to 8 bits; the filter is widened by
// the scale when shrinking; per-output weights are normalised in float64 and
// applied as 22-bit fixed point with round-half-up.
//
// It is byte-identical to Pillow 9.4 on the goldens in testdata (up- and
// downscaling, RGB and grey); an image already at the requested size is
// never resampled.
func Resize(src []byte, ch, sw, sh, dw, dh int) []byte {
	if sw == dw && sh == dh {
		return append([]byte(nil), src...)
	}
	cur, cw := src, sw
	// Pillow's first pass only computes the source rows the vertical pass
	// reads; computing all of them gives the same values.
	if dw != sw {
		cur = resampleH(cur, ch, sw, sh, dw)
		cw = dw
	}
	if dh != sh {
		cur = resampleV(cur, ch, cw, sh, dh)
	}
	return cur
}

const precisionBits = 32 - 8 - 2

func lanczos(x float64) float64 {
	if x >= -3 && x < 3 { // Pillow: -3 ≤ x < 3
		return sinc(x) * sinc(x/3)
	}
	return 0
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

// coeffs is one output pixel's source window [min, min+len(k)) and its
// fixed-point weights.
type coeffs struct {
	min int
	k   []int32
}

// precompute follows Pillow's precompute_coeffs + normalize_coeffs_8bpc.
func precompute(in, out int) []coeffs {
	const support = 3.0
	scale := float64(in) / float64(out)
	fscale := max(scale, 1)
	sup := support * fscale
	ss := 1 / fscale
	cs := make([]coeffs, out)
	k := make([]float64, 0, int(math.Ceil(sup))*2+1)
	for xx := range cs {
		center := (float64(xx) + 0.5) * scale
		xmin := max(int(center-sup+0.5), 0)
		xmax := min(int(center+sup+0.5), in) - xmin
		k = k[:0]
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w := lanczos((float64(x+xmin) - center + 0.5) * ss)
			k = append(k, w)
			ww += w
		}
		fk := make([]int32, len(k))
		for i, w := range k {
			if ww != 0 {
				w /= ww
			}
			if w < 0 {
				fk[i] = int32(-0.5 + w*(1<<precisionBits))
			} else {
				fk[i] = int32(0.5 + w*(1<<precisionBits))
			}
		}
		cs[xx] = coeffs{xmin, fk}
	}
	return cs
}

func clip8(v int64) byte {
	v >>= precisionBits
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return byte(v)
}

func resampleH(src []byte, ch, sw, sh, dw int) []byte {
	cs := precompute(sw, dw)
	out := make([]byte, ch*dw*sh)
	for y := 0; y < sh; y++ {
		row := src[y*sw*ch : (y+1)*sw*ch]
		for x, c := range cs {
			for p := 0; p < ch; p++ {
				acc := int64(1) << (precisionBits - 1)
				for i, k := range c.k {
					acc += int64(row[(c.min+i)*ch+p]) * int64(k)
				}
				out[(y*dw+x)*ch+p] = clip8(acc)
			}
		}
	}
	return out
}

func resampleV(src []byte, ch, w, sh, dh int) []byte {
	cs := precompute(sh, dh)
	out := make([]byte, ch*w*dh)
	stride := w * ch
	for y, c := range cs {
		for x := 0; x < stride; x++ {
			acc := int64(1) << (precisionBits - 1)
			for i, k := range c.k {
				acc += int64(src[(c.min+i)*stride+x]) * int64(k)
			}
			out[y*stride+x] = clip8(acc)
		}
	}
	return out
}
