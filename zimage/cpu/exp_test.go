package cpu

import (
	"math"
	"testing"
)

// TestExpf checks the softmax exponential against math.Exp: at most 2 ulp
// over the range the softmax uses, 0 below the normal range.
func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x <= 10; x += 0.000731 {
		got := float64(expf(x))
		want := math.Exp(float64(x))
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		if e := math.Abs(got-want) / ulp; e > worst {
			worst = e
		}
	}
	if worst > 2 {
		t.Errorf("expf error %.2f ulp > 2", worst)
	}
	t.Logf("expf max error %.2f ulp", worst)
	if expf(float32(math.Inf(-1))) != 0 || expf(-100) != 0 || expf(0) != 1 {
		t.Error("expf special values")
	}
	if v := expf(float32(math.NaN())); v == v {
		t.Error("expf(NaN) is not NaN")
	}
}

// TestSoftmaxHelpers checks the (possibly vectorised) row helpers against
// scalar loops on lengths around the vector width.
func TestSoftmaxHelpers(t *testing.T) {
	for _, n := range []int{1, 15, 16, 17, 33, 64, 255, 256} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(math.Sin(float64(i)*1.7)) * 20
		}
		x[n/2] = -1000 // underflows to 0
		wantMax := float32(math.Inf(-1))
		for _, v := range x {
			wantMax = max(wantMax, v)
		}
		if got := rowMax(x, float32(math.Inf(-1))); got != wantMax {
			t.Errorf("n=%d: rowMax = %v, want %v", n, got, wantMax)
		}
		if got := rowMax(x, 1e9); got != 1e9 {
			t.Errorf("n=%d: rowMax ignores the running max", n)
		}
		y := append([]float32(nil), x...)
		sum := expSub(y, wantMax)
		var wantSum float64
		for i, v := range x {
			want := math.Exp(float64(v - wantMax))
			wantSum += want
			if d := math.Abs(float64(y[i]) - want); d > 2.5e-7*want+1e-38 {
				t.Fatalf("n=%d: exp(x[%d]-max) = %v, want %v", n, i, y[i], want)
			}
		}
		if math.Abs(sum-wantSum) > 1e-6*wantSum {
			t.Errorf("n=%d: sum %v, want %v", n, sum, wantSum)
		}
		o := append([]float32(nil), x...)
		scaleAdd(o, y, 0.5)
		for i := range o {
			if want := x[i]*0.5 + y[i]; math.Abs(float64(o[i]-want)) > 1e-6*math.Abs(float64(want)) {
				t.Fatalf("n=%d: scaleAdd[%d] = %v, want %v", n, i, o[i], want)
			}
		}
	}
}

// TestSiLUVec checks the vectorised SiLU/SwiGLU against float64 on a wide
// range of inputs (3 ulp-ish: the exp, the add and the divide each round).
func TestSiLUVec(t *testing.T) {
	var src []float32
	for x := -120.0; x <= 120; x += 0.0173 {
		src = append(src, float32(x))
	}
	src = append(src, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30)
	dst := make([]float32, len(src))
	siluVec(dst, src)
	up := make([]float32, len(src))
	for i := range up {
		up[i] = float32(i%7) - 3
	}
	sw := make([]float32, len(src))
	swigluVec(sw, src, up)
	for i, x := range src {
		want := float64(x) / (1 + math.Exp(-float64(x)))
		if d := math.Abs(float64(dst[i]) - want); d > 4e-7*math.Abs(want)+1e-35 {
			t.Fatalf("silu(%v) = %v, want %v", x, dst[i], want)
		}
		if w := want * float64(up[i]); math.Abs(float64(sw[i])-w) > 5e-7*math.Abs(w)+1e-35 {
			t.Fatalf("swiglu(%v, %v) = %v, want %v", x, up[i], sw[i], w)
		}
	}
}
