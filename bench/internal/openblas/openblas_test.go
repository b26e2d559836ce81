package openblas

import (
	"math"
	"testing"
)

func TestSgemmBT(t *testing.T) {
	l, err := Load()
	if err != nil {
		t.Skip(err)
	}
	t.Logf("%s: %s (core %s)", l.Path, l.Config(), l.Corename())
	const m, n, k = 3, 4, 5
	a := make([]float32, m*k)
	b := make([]float32, n*k)
	for i := range a {
		a[i] = float32(i%7) - 2
	}
	for i := range b {
		b[i] = float32(i%5) - 1.5
	}
	c := make([]float32, m*n)
	if err := l.SgemmBT(c, a, b, m, n, k); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[j*k+p]
			}
			if math.Abs(float64(c[i*n+j]-s)) > 1e-5 {
				t.Fatalf("C[%d,%d] = %g, want %g", i, j, c[i*n+j], s)
			}
		}
	}
	l.SetThreads(2)
	if got := l.Threads(); got != 2 {
		t.Errorf("threads = %d after SetThreads(2)", got)
	}
}
