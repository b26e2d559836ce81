package gemm

import (
	"encoding/binary"
	"math"

	"github.com/zimage/zimage/weights"
)

// srcKind says how the right operand is stored.
type srcKind uint8

const (
	srcF32T   srcKind = iota // float32 [n,k] (transposed, as Linear weights)
	srcF32N                  // float32 [k,n]
	srcBytesT                // raw little-endian bytes [n,k] of dtype dt
)

// bSource describes the right operand B so panels of it can be packed.
type bSource struct {
	kind srcKind
	f32  []float32
	raw  []byte
	dt   weights.DType
	n, k int
}

func newBSource(b []byte, dt weights.DType, n, k int) bSource {
	return bSource{kind: srcBytesT, raw: b[:n*k*dt.Size()], dt: dt, n: n, k: k}
}

// packB packs columns j0..j0+nb of B over k range p0..p0+kb into dst as
// micro-panels of nr columns: panel q holds dst[q*nr*kb + p*nr + jj] =
// B(p0+p, j0+q*nr+jj), zero-padded past nb. dst needs ceil(nb/nr)*nr*kb.
func packB(dst []float32, src *bSource, j0, nb, p0, kb, nr int) {
	for q := 0; q*nr < nb; q++ {
		cols := min(nr, nb-q*nr)
		panel := dst[q*nr*kb : (q+1)*nr*kb]
		jbase := j0 + q*nr
		if cols < nr {
			clear(panel)
		}
		switch src.kind {
		case srcF32N:
			for p := 0; p < kb; p++ {
				row := src.f32[(p0+p)*src.n+jbase:]
				copy(panel[p*nr:p*nr+cols], row[:cols])
			}
		case srcF32T:
			for jj := 0; jj < cols; jj++ {
				row := src.f32[(jbase+jj)*src.k+p0:][:kb]
				for p, v := range row {
					panel[p*nr+jj] = v
				}
			}
		case srcBytesT:
			packRowsBytes(panel, src, jbase, cols, p0, kb, nr)
		}
	}
}

// packRowsBytes widens cols rows of a raw [n,k] B into one micro-panel.
func packRowsBytes(panel []float32, src *bSource, jbase, cols, p0, kb, nr int) {
	k := src.k
	switch src.dt {
	case weights.F32:
		for jj := 0; jj < cols; jj++ {
			row := src.raw[((jbase+jj)*k+p0)*4:][:kb*4]
			for p := 0; p < kb; p++ {
				panel[p*nr+jj] = math.Float32frombits(binary.LittleEndian.Uint32(row[p*4:]))
			}
		}
	case weights.BF16:
		for jj := 0; jj < cols; jj++ {
			row := src.raw[((jbase+jj)*k+p0)*2:][:kb*2]
			for p := 0; p < kb; p++ {
				panel[p*nr+jj] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(row[p*2:])) << 16)
			}
		}
	case weights.F16:
		for jj := 0; jj < cols; jj++ {
			row := src.raw[((jbase+jj)*k+p0)*2:][:kb*2]
			for p := 0; p < kb; p++ {
				panel[p*nr+jj] = weights.F16ToF32(binary.LittleEndian.Uint16(row[p*2:]))
			}
		}
	case weights.F8E4M3, weights.F8E5M2:
		tab := weights.F8E4M3Table()
		if src.dt == weights.F8E5M2 {
			tab = weights.F8E5M2Table()
		}
		for jj := 0; jj < cols; jj++ {
			row := src.raw[(jbase+jj)*k+p0:][:kb]
			for p, v := range row {
				panel[p*nr+jj] = tab[v]
			}
		}
	}
}

// packA packs rows i0..i0+mb of A [.,lda] over k range p0..p0+kb into dst as
// micro-panels of mr rows: dst[r*mr*kb + p*mr + ii] = A(i0+r*mr+ii, p0+p),
// zero-padded past mb.
func packA(dst, a []float32, lda, i0, mb, p0, kb, mr int) {
	for r := 0; r*mr < mb; r++ {
		packAPanel(dst[r*mr*kb:(r+1)*mr*kb], a, lda, i0+r*mr, min(mr, mb-r*mr), p0, kb, mr)
	}
}

func packAPanel(panel, a []float32, lda, ibase, rows, p0, kb, mr int) {
	if rows < mr {
		clear(panel)
	}
	for ii := 0; ii < rows; ii++ {
		row := a[(ibase+ii)*lda+p0:][:kb]
		for p, v := range row {
			panel[p*mr+ii] = v
		}
	}
}
