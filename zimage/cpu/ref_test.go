package cpu

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
)

// Naive float64 references and helpers shared by the tests.

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// relL2 is ‖got−want‖ / ‖want‖.
func relL2(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func checkClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	if e := relL2(got, want); !(e <= tol) {
		t.Errorf("%s: rel_l2 %.3g > %.3g", name, e, tol)
	}
}

// host reads t back and fails the test on a backend error.
func host(t *testing.T, b *Backend, x compute.Tensor) []float32 {
	t.Helper()
	v := b.ToHost(x)
	if err := b.Err(); err != nil {
		t.Fatalf("backend error: %v", err)
	}
	return v
}

// weightOf encodes v as a checkpoint tensor of dtype dt and returns it with
// the float32 values it actually holds after rounding.
func weightOf(v []float32, dt weights.DType, shape ...int) (*weights.Tensor, []float32) {
	exact := make([]float32, len(v))
	var data []byte
	switch dt {
	case weights.F32:
		data = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
			exact[i] = x
		}
	case weights.BF16:
		data = make([]byte, 2*len(v))
		for i, x := range v {
			h := weights.F32ToBF16(x)
			binary.LittleEndian.PutUint16(data[2*i:], h)
			exact[i] = weights.BF16ToF32(h)
		}
	case weights.F16:
		data = make([]byte, 2*len(v))
		for i, x := range v {
			h := f32ToF16(x)
			binary.LittleEndian.PutUint16(data[2*i:], h)
			exact[i] = weights.F16ToF32(h)
		}
	case weights.F8E4M3, weights.F8E5M2:
		tab := weights.F8E4M3Table()
		if dt == weights.F8E5M2 {
			tab = weights.F8E5M2Table()
		}
		data = make([]byte, len(v))
		for i, x := range v {
			data[i] = nearest(tab, x)
			exact[i] = tab[data[i]]
		}
	}
	return &weights.Tensor{Name: "test." + dt.String(), DType: dt, Shape: shape, Data: data}, exact
}

// f32ToF16 truncates to half precision (normal range only; enough for tests).
func f32ToF16(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16((b>>13)&0x3ff)
}

func nearest(tab *[256]float32, x float32) uint8 {
	best, bd := uint8(0), math.Inf(1)
	for i, v := range tab {
		if v != v {
			continue
		}
		if d := math.Abs(float64(v - x)); d < bd {
			best, bd = uint8(i), d
		}
	}
	return best
}

// refAttention is the naive softmax attention in float64.
func refAttention(q, k, v []float32, lq, lk, heads, kvHeads, dh int, scale float64, causal bool) []float64 {
	out := make([]float64, lq*heads*dh)
	s := make([]float64, lk)
	for h := range heads {
		g := h / (heads / kvHeads)
		for i := range lq {
			mx := math.Inf(-1)
			for j := range lk {
				if causal && j > i {
					s[j] = math.Inf(-1)
					continue
				}
				var d float64
				for c := range dh {
					d += float64(q[i*heads*dh+h*dh+c]) * float64(k[j*kvHeads*dh+g*dh+c])
				}
				s[j] = d * scale
				mx = math.Max(mx, s[j])
			}
			var sum float64
			for j := range lk {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			for c := range dh {
				var acc float64
				for j := range lk {
					acc += s[j] * float64(v[j*kvHeads*dh+g*dh+c])
				}
				out[i*heads*dh+h*dh+c] = acc / sum
			}
		}
	}
	return out
}

// refConv is the naive cross-correlation in float64.
func refConv(x, w, bias []float32, ci, h, wd, co, kh, kw, pad int) []float64 {
	ho, wo := h+2*pad-kh+1, wd+2*pad-kw+1
	out := make([]float64, co*ho*wo)
	for o := range co {
		for y := range ho {
			for xo := range wo {
				var s float64
				if bias != nil {
					s = float64(bias[o])
				}
				for c := range ci {
					for dy := range kh {
						for dx := range kw {
							iy, ix := y+dy-pad, xo+dx-pad
							if iy < 0 || iy >= h || ix < 0 || ix >= wd {
								continue
							}
							s += float64(w[((o*ci+c)*kh+dy)*kw+dx]) * float64(x[(c*h+iy)*wd+ix])
						}
					}
				}
				out[(o*ho+y)*wo+xo] = s
			}
		}
	}
	return out
}
