package tokenizer

import "sync"

// noMerge is the rank of a pair that has no merge rule.
const noMerge = ^uint32(0)

// pairKey packs an adjacent pair of token ids into a merges-table key.
func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// lookup returns the rank of merging left and right and the id of the merged
// token; rank is noMerge if the pair has no rule.
func (t *Tokenizer) lookup(left, right int32) (rank uint32, merged int32) {
	v, ok := t.merges.get(pairKey(left, right))
	if !ok {
		return noMerge, -1
	}
	return uint32(v >> 32), int32(uint32(v))
}

// shortPiece is the piece length (in bytes) up to which bpe uses the simple
// array merge; longer pieces use the heap so that huge pieces (a 100 KB run of
// one letter) stay O(n log n).
const shortPiece = 64

// bpe appends the ids of one pre-tokenized piece (raw bytes, non-empty) to
// ids. It applies the reference rule: repeatedly merge the adjacent pair with
// the lowest merge rank, the leftmost one among equal ranks, until no pair has
// a rule.
func (t *Tokenizer) bpe(ids []int32, piece string) []int32 {
	if len(piece) > shortPiece {
		return t.bpeHeap(ids, piece)
	}
	var symBuf [shortPiece]int32
	var rankBuf [shortPiece]uint32
	var newBuf [shortPiece]int32
	n := len(piece)
	sym, rank, merged := symBuf[:n], rankBuf[:n], newBuf[:n]
	for i := 0; i < n; i++ {
		sym[i] = t.byteID[piece[i]]
	}
	// rank[i], merged[i] describe the pair (sym[i], sym[i+1]).
	for i := 0; i+1 < n; i++ {
		rank[i], merged[i] = t.lookup(sym[i], sym[i+1])
	}
	for n > 1 {
		best, bi := noMerge, -1
		for i := 0; i+1 < n; i++ {
			if rank[i] < best { // strict: the leftmost of equal ranks wins
				best, bi = rank[i], i
			}
		}
		if bi < 0 {
			break
		}
		sym[bi] = merged[bi]
		copy(sym[bi+1:n], sym[bi+2:n])
		copy(rank[bi+1:n], rank[bi+2:n])
		copy(merged[bi+1:n], merged[bi+2:n])
		n--
		if bi > 0 {
			rank[bi-1], merged[bi-1] = t.lookup(sym[bi-1], sym[bi])
		}
		if bi+1 < n {
			rank[bi], merged[bi] = t.lookup(sym[bi], sym[bi+1])
		} else {
			rank[bi] = noMerge
		}
	}
	return append(ids, sym[:n]...)
}

// bpeHeap is bpe for long pieces: a doubly linked list of symbols and a
// min-heap of candidate merges keyed by (rank, position), with stale entries
// skipped when popped. Positions are the original byte offsets, which keep the
// left-to-right order, so ties break leftmost as in bpe.
func (t *Tokenizer) bpeHeap(ids []int32, piece string) []int32 {
	n := len(piece)
	sym := make([]int32, n) // -1: merged into its left neighbour
	prev := make([]int32, n)
	next := make([]int32, n)
	for i := 0; i < n; i++ {
		sym[i] = t.byteID[piece[i]]
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
	}
	next[n-1] = -1
	h := make(mergeHeap, 0, n)
	for i := 0; i+1 < n; i++ {
		if r, _ := t.lookup(sym[i], sym[i+1]); r != noMerge {
			h = append(h, uint64(r)<<32|uint64(i))
		}
	}
	h.init()
	for len(h) > 0 {
		top := h.pop()
		r, p := uint32(top>>32), int32(uint32(top))
		q := next[p]
		if sym[p] < 0 || q < 0 {
			continue
		}
		cur, m := t.lookup(sym[p], sym[q])
		if cur != r {
			continue // stale: a neighbour changed since this entry was pushed
		}
		sym[p] = m
		sym[q] = -1
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if l := prev[p]; l >= 0 {
			if r, _ := t.lookup(sym[l], sym[p]); r != noMerge {
				h.push(uint64(r)<<32 | uint64(l))
			}
		}
		if nx := next[p]; nx >= 0 {
			if r, _ := t.lookup(sym[p], sym[nx]); r != noMerge {
				h.push(uint64(r)<<32 | uint64(p))
			}
		}
	}
	for p := int32(0); p >= 0; p = next[p] {
		ids = append(ids, sym[p])
	}
	return ids
}

// mergeHeap is a binary min-heap of rank<<32|position entries.
type mergeHeap []uint64

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(v uint64) {
	*h = append(*h, v)
	s := *h
	i := len(s) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (h *mergeHeap) pop() uint64 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	*h = s[:last]
	h.down(0)
	return top
}

func (h mergeHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Cache bounds. Only pieces shorter than cacheMaxPiece bytes are cached (long
// pieces are rare and would dominate memory), and the whole cache is dropped
// when it holds cacheMaxEntries pieces or cacheMaxBytes of keys and ids, so
// adversarial input cannot grow it without bound.
const (
	cacheMaxPiece   = 256
	cacheMaxEntries = 1 << 15
	cacheMaxBytes   = 8 << 20
)

// pieceCache maps a piece (raw bytes) to its BPE ids. Safe for concurrent use.
type pieceCache struct {
	mu    sync.Mutex
	m     map[string][]int32
	bytes int
}

func (c *pieceCache) get(piece string) ([]int32, bool) {
	c.mu.Lock()
	v, ok := c.m[piece]
	c.mu.Unlock()
	return v, ok
}

func (c *pieceCache) put(piece string, ids []int32) {
	cost := len(piece) + 4*len(ids) + 64 // 64: rough map entry and header overhead
	c.mu.Lock()
	if c.m == nil || len(c.m) >= cacheMaxEntries || c.bytes+cost > cacheMaxBytes {
		c.m = make(map[string][]int32, 1024)
		c.bytes = 0
	}
	c.m[piece] = ids
	c.bytes += cost
	c.mu.Unlock()
}

func (c *pieceCache) reset() {
	c.mu.Lock()
	c.m, c.bytes = nil, 0
	c.mu.Unlock()
}
