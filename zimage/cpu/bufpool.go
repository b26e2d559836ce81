package cpu

// Freed activation buffers are kept for reuse, up to poolCap bytes. Two
// rules keep a forward free of fresh allocations (each new buffer is page
// faults and kernel zeroing: at 1024² a DiT forward that missed the pool
// spent ~10% of its CPU time in them):
//
//   - a request for n floats takes a pooled buffer of exactly n or, failing
//     that, the smallest one of capacity up to n + n/16, so the noise
//     refiner's 4096 image rows reuse the main layers' 4096+caption rows;
//   - when a release would pass the cap, the least recently released
//     buffers are dropped first: the sizes in use now stay, those of an
//     earlier stage (or resolution) go.

// pooledBuf is a freed buffer (len = cap) and its release stamp.
type pooledBuf struct {
	buf []float32
	seq uint64
}

// alloc returns an uninitialised buffer of n floats (every op overwrites its
// whole output); its capacity may be a little larger.
func (b *Backend) alloc(n int) []float32 {
	if n <= 0 {
		return make([]float32, 0)
	}
	b.bufMu.Lock()
	c := n
	if len(b.bufs[n]) == 0 {
		c = 0
		for k, l := range b.bufs {
			if k > n && k-n <= n/16 && len(l) > 0 && (c == 0 || k < c) {
				c = k
			}
		}
	}
	if c == 0 {
		b.bufMu.Unlock()
		return make([]float32, n)
	}
	l := b.bufs[c]
	e := l[len(l)-1]
	l[len(l)-1] = pooledBuf{}
	if len(l) == 1 {
		delete(b.bufs, c)
	} else {
		b.bufs[c] = l[:len(l)-1]
	}
	b.poolBytes -= 4 * int64(c)
	b.bufMu.Unlock()
	return e.buf[:n]
}

// release returns a buffer from alloc to the pool.
func (b *Backend) release(buf []float32) {
	c := cap(buf)
	if c == 0 {
		return
	}
	size := 4 * int64(c)
	b.bufMu.Lock()
	defer b.bufMu.Unlock()
	if size > b.poolCap {
		return
	}
	for b.poolBytes+size > b.poolCap {
		b.dropOldest()
	}
	if b.bufs == nil {
		b.bufs = map[int][]pooledBuf{}
	}
	b.poolSeq++
	b.bufs[c] = append(b.bufs[c], pooledBuf{buf[:c], b.poolSeq})
	b.poolBytes += size
}

// dropOldest forgets the least recently released buffer (each size's list
// is in release order). The caller holds bufMu and poolBytes > 0.
func (b *Backend) dropOldest() {
	k0 := -1
	for k, l := range b.bufs {
		if k0 < 0 || l[0].seq < b.bufs[k0][0].seq {
			k0 = k
		}
	}
	l := b.bufs[k0]
	l[0] = pooledBuf{}
	if len(l) == 1 {
		delete(b.bufs, k0)
	} else {
		b.bufs[k0] = l[1:]
	}
	b.poolBytes -= 4 * int64(k0)
}
