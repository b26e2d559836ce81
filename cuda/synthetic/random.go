package synthetic

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"github.com/zimage/zimage/weights"
)

// Scales are the spreads of RandomBF16's uniform values beyond the
// matrices (which get ±√(3/fan-in): unit output variance): norm gains and
// other 1-D weights 1 ± Gain, biases ±Bias, pad tokens ±Pad.
type Scales struct {
	Gain, Bias, Pad float32
}

// RandomBF16 returns seeded uniform bf16 values for t (little-endian
// bytes), of the scales sc gives its kind (by name and rank). Large
// tensors are filled in parallel chunks, each with its own generator, so
// the values depend on seed alone.
func RandomBF16(t *weights.Tensor, seed uint64, sc Scales) []byte {
	n := t.NumElements()
	var lo, hi float32
	switch {
	case strings.HasSuffix(t.Name, ".bias"):
		lo, hi = -sc.Bias, sc.Bias
	case strings.Contains(t.Name, "pad_token"):
		lo, hi = -sc.Pad, sc.Pad
	case len(t.Shape) <= 1:
		lo, hi = 1-sc.Gain, 1+sc.Gain
	default:
		a := float32(math.Sqrt(3 / float64(max(n/max(t.Shape[0], 1), 1))))
		lo, hi = -a, a
	}
	data := make([]byte, 2*n)
	const chunk = 1 << 22
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for c0 := 0; c0 < n; c0 += chunk {
		wg.Add(1)
		sem <- struct{}{}
		go func(c0 int) {
			defer func() { <-sem; wg.Done() }()
			r := rand.New(rand.NewPCG(seed, uint64(c0)))
			for i := c0; i < min(n, c0+chunk); i++ {
				h := weights.F32ToBF16(lo + (hi-lo)*r.Float32())
				data[2*i], data[2*i+1] = byte(h), byte(h>>8)
			}
		}(c0)
	}
	wg.Wait()
	return data
}

// Random is s with every tensor filled by RandomBF16 on first use (tensor
// i of the sorted names with seed Seed+i), for CPU tests and benchmarks of
// networks at sizes no checkpoint has. Safe for concurrent use.
type Random struct {
	Src    *Source
	Seed   uint64
	Scales Scales

	mu   sync.Mutex
	seed map[string]uint64
}

// Names returns every tensor name, sorted.
func (r *Random) Names() []string { return r.Src.Names() }

// Tensor returns the named tensor with its random data.
func (r *Random) Tensor(name string) (*weights.Tensor, bool) {
	t, ok := r.Src.Tensor(name)
	if !ok {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.Data == nil {
		if r.seed == nil {
			r.seed = map[string]uint64{}
			for i, n := range r.Src.Names() {
				r.seed[n] = r.Seed + uint64(i)
			}
		}
		t.Data = RandomBF16(t, r.seed[name], r.Scales)
	}
	return t, true
}
