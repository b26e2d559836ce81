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
	srcQuantT                // ggml blocks [n, k/BlockSize] of dtype dt (see quant.go)
	srcConv                  // implicit im2col of an image f32 (see conv.go)
)

// bSource describes the right operand B so panels of it can be packed.
type bSource struct {
	kind    srcKind
	f32     []float32
	raw     []byte
	dt      weights.DType
	n, k    int
	deq     weights.DequantBlockFunc // srcQuantT: one block's dequantizer
	rb      int                      // srcQuantT: bytes per row of B
	conv    *convGeom                // srcConv
	bf16    []uint16                 // srcConv in bf16: the padded image rounded once (bf16conv.go)
	taps    []int                    // srcConv in bf16: offset of each im2col row in bf16
	rowBias []float32                // srcConv: per-output-channel bias, added after the last k block
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
		if src.kind == srcF32N {
			for p := 0; p < kb; p++ {
				row := src.f32[(p0+p)*src.n+jbase:]
				copy(panel[p*nr:p*nr+cols], row[:cols])
			}
			continue
		}
		if src.kind == srcConv {
			convRows(panel, nr, cols, src.f32, src.conv, p0, kb, jbase)
			continue
		}
		if src.kind == srcQuantT {
			packQuantPanel(panel, nr, src, jbase, cols, p0, kb)
			continue
		}
		// Transposed sources: whole 16×16 tiles in assembly where available,
		// the ragged rest element by element.
		rows, ks := transposeRows(panel, nr, src, jbase, cols, p0, kb)
		packScalar(panel, nr, src, jbase, 0, rows, ks, kb, p0)
		packScalar(panel, nr, src, jbase, rows, cols, 0, kb, p0)
	}
}

// packScalar fills panel[p*nr+jj] = B(p0+p, jbase+jj) for jj in [jlo, jhi),
// p in [plo, phi), for a transposed ([n,k]) source.
func packScalar(panel []float32, nr int, src *bSource, jbase, jlo, jhi, plo, phi, p0 int) {
	if jlo >= jhi || plo >= phi {
		return
	}
	k := src.k
	pn := phi - plo
	var tab *[256]float32
	switch src.dt {
	case weights.F8E4M3:
		tab = weights.F8E4M3Table()
	case weights.F8E5M2:
		tab = weights.F8E5M2Table()
	}
	for jj := jlo; jj < jhi; jj++ {
		off := (jbase+jj)*k + p0 + plo // element index of the row's first value
		out := panel[plo*nr+jj:]
		if src.kind == srcF32T {
			for p, v := range src.f32[off : off+pn] {
				out[p*nr] = v
			}
			continue
		}
		switch src.dt {
		case weights.F32:
			row := src.raw[off*4:][:pn*4]
			for p := 0; p < pn; p++ {
				out[p*nr] = math.Float32frombits(binary.LittleEndian.Uint32(row[p*4:]))
			}
		case weights.BF16:
			row := src.raw[off*2:][:pn*2]
			for p := 0; p < pn; p++ {
				out[p*nr] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(row[p*2:])) << 16)
			}
		case weights.F16:
			row := src.raw[off*2:][:pn*2]
			for p := 0; p < pn; p++ {
				out[p*nr] = weights.F16ToF32(binary.LittleEndian.Uint16(row[p*2:]))
			}
		default: // F8E4M3, F8E5M2
			for p, v := range src.raw[off : off+pn] {
				out[p*nr] = tab[v]
			}
		}
	}
}

// packAPanel packs rows ibase..ibase+rows of A [.,lda] over k range
// p0..p0+kb as one micro-panel of mr rows: panel[p*mr+ii] = A(ibase+ii,
// p0+p), zero-padded past rows.
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
