package tokenizer

import "math/bits"

// mergeTable maps pairKey(left, right) to rank<<32 | merged id. It is an
// open-addressing hash table with linear probing, kept at most ~30% full:
// each lookup, hit or miss, usually touches one cache line, about twice as
// fast as a Go map here, where merge lookups dominate cold encoding.
type mergeTable struct {
	slots []mergeSlot
	shift uint // 64 - log2(len(slots))
	n     int
}

type mergeSlot struct{ key, val uint64 }

// emptyKey marks a free slot; no pair key has it (ids are < 2^30).
const emptyKey = ^uint64(0)

func newMergeTable(capacity int) *mergeTable {
	size := 1 << bits.Len(uint(capacity*3)) // ≥ 3× capacity, a power of two
	t := &mergeTable{slots: make([]mergeSlot, size), shift: uint(64 - bits.Len(uint(size-1)))}
	for i := range t.slots {
		t.slots[i].key = emptyKey
	}
	return t
}

func (t *mergeTable) index(key uint64) int {
	return int((key * 0x9E3779B97F4A7C15) >> t.shift) // Fibonacci hashing
}

func (t *mergeTable) get(key uint64) (uint64, bool) {
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == key {
			return s.val, true
		}
		if s.key == emptyKey {
			return 0, false
		}
	}
}

// put sets the value of key, replacing an existing one.
func (t *mergeTable) put(key, val uint64) {
	if 3*(t.n+1) > len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == key {
			s.val = val
			return
		}
		if s.key == emptyKey {
			s.key, s.val = key, val
			t.n++
			return
		}
	}
}

func (t *mergeTable) grow() {
	old := t.slots
	*t = *newMergeTable(2 * len(old) / 3)
	for _, s := range old {
		if s.key != emptyKey {
			t.put(s.key, s.val)
		}
	}
}
