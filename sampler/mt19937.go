package sampler

// mt19937 is the 32-bit Mersenne Twister exactly as torch's CPU generator
// keeps it (at::mt19937): seeded from the low 32 bits of the seed, state
// regenerated lazily when the 624 words are used up.
type mt19937 struct {
	state [mtN]uint32
	left  int // words left before the next regeneration (+1, like torch)
	next  int // index of the next word to temper
}

const (
	mtN       = 624
	mtM       = 397
	mtMatrixA = 0x9908b0df
)

func (m *mt19937) seed(s uint64) {
	m.state[0] = uint32(s) // torch keeps only the low 32 bits
	for j := 1; j < mtN; j++ {
		prev := m.state[j-1]
		m.state[j] = 1812433253*(prev^(prev>>30)) + uint32(j)
	}
	m.left = 1
	m.next = 0
}

func mtTwist(u, v uint32) uint32 {
	y := ((u & 0x80000000) | (v & 0x7fffffff)) >> 1
	if v&1 != 0 {
		y ^= mtMatrixA
	}
	return y
}

// regenerate runs the standard twist in index order, so entries below
// mtN-mtM read not-yet-updated words and the rest read updated ones.
func (m *mt19937) regenerate() {
	s := &m.state
	for i := 0; i < mtN; i++ {
		s[i] = s[(i+mtM)%mtN] ^ mtTwist(s[i], s[(i+1)%mtN])
	}
	m.left = mtN
	m.next = 0
}

// u32 returns the next tempered 32-bit output.
func (m *mt19937) u32() uint32 {
	m.left--
	if m.left == 0 {
		m.regenerate()
	}
	y := m.state[m.next]
	m.next++
	return temper(y)
}

func temper(y uint32) uint32 {
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// fill24 sets dst[i] to the low 24 bits of successive outputs: u32 in a
// loop, without a call per value.
func (m *mt19937) fill24(dst []uint32) {
	for i := range dst {
		m.left--
		if m.left == 0 {
			m.regenerate()
		}
		dst[i] = temper(m.state[m.next]) & (1<<24 - 1)
		m.next++
	}
}

// u64 is torch's random64(): the first draw is the high word.
func (m *mt19937) u64() uint64 {
	hi := m.u32()
	lo := m.u32()
	return uint64(hi)<<32 | uint64(lo)
}
