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
