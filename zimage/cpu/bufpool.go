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
//
// The cap follows the working set: within a request it is the larger of
// the configured cap (WithPoolBytes, 1 GiB by default) and the most bytes
// of activations live at once since the request began — memory the request
// has shown it needs, so the pool costs at most that much again, about what
// Go's default GC heap goal would leave as garbage anyway — so no stage
// drops the buffers of the one before just because the generation is large.
// Between requests (TrimToCap, which the Pipeline calls after every Run
// unless a memory budget is set; then it calls Trim, which empties the pool)
// the pool is cut back to the configured cap, oldest first: a second generation
// at a size whose buffers fit the cap (the 262 M-parameter model's 512²,
// ~0.7 GB) takes no fresh memory at all, while a 1024²–2048² generation
// keeps 1 GiB of its buffers, not many GB, once it is done.
//
// Transparent huge pages for fresh buffers (MADV_HUGEPAGE on the 2 MiB
// aligned interior of large Go slices, which keeps them GC-owned) were
// tried and dropped: ~340 huge-page faults instead of ~240K small ones in a
// first 512² generation, but its system time went from 0.5–0.7 s to
// 1.7–1.9 s on the 2-vCPU VM measured (bench/README.md).

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
		buf := b.fromReserve(n) // reserve.go
		if buf == nil {
			b.noteLive(4 * int64(n))
			b.bufMu.Unlock()
			buf = make([]float32, n)
			b.prefault(buf) // prefault.go
			return buf
		}
		b.noteLive(4 * int64(cap(buf)))
		b.bufMu.Unlock()
		return buf
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
	b.noteLive(4 * int64(c))
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
	b.live -= size
	limit := max(b.poolCap, b.peakLive)
	if b.poolCap <= 0 || size > limit {
		return
	}
	for b.poolBytes+size > limit {
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

// noteLive counts n bytes handed out. The caller holds bufMu.
func (b *Backend) noteLive(n int64) {
	b.live += n
	b.peakLive = max(b.peakLive, b.live-b.liveBase)
}

// TrimToCap ends a request: it cuts the free list down to the configured
// cap (WithPoolBytes), least recently released buffers first, and restarts
// the working-set measure that lets the cap grow within a request.
func (b *Backend) TrimToCap() {
	b.bufMu.Lock()
	for b.poolBytes > b.poolCap {
		b.dropOldest()
	}
	b.liveBase, b.peakLive = b.live, 0
	b.bufMu.Unlock()
	b.endReserve()
}

// PooledBytes is the size of the free list of activation buffers.
func (b *Backend) PooledBytes() int64 {
	b.bufMu.Lock()
	defer b.bufMu.Unlock()
	return b.poolBytes
}
