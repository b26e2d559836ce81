package dit

import (
	"fmt"
	"math"

	"github.com/zimage/zimage/weights"
)

// SeqMultiple is the length both token streams are padded to a multiple of
// (SEQ_MULTI_OF in the reference), with learned pad tokens.
const SeqMultiple = 32

// Layout is the token layout of one forward: how a [C, Hl, Wl] latent and an
// n-row caption become padded token streams, and where each token sits in
// the 3-axis RoPE grid.
type Layout struct {
	C, Hl, Wl, P int // latent channels, latent height/width, patch size
	Ht, Wt       int // image tokens per column / row (Hl/P, Wl/P)
	Ni, Nip      int // image tokens, padded to a multiple of SeqMultiple
	N, Lcp       int // caption rows, padded to a multiple of SeqMultiple
}

// ShapeError reports a latent or caption the DiT cannot take.
type ShapeError struct {
	What   string
	Reason string
}

func (e *ShapeError) Error() string { return fmt.Sprintf("dit: %s: %s", e.What, e.Reason) }

func ceilTo(n, m int) int { return (n + m - 1) / m * m }

// NewLayout checks the sizes against cfg and derives the layout.
func NewLayout(cfg weights.DiTConfig, hl, wl, capLen int) (Layout, error) {
	p := cfg.PatchSize()
	switch {
	case hl <= 0 || wl <= 0 || hl%p != 0 || wl%p != 0:
		return Layout{}, &ShapeError{"latent", fmt.Sprintf("%d×%d is not a positive multiple of the patch size %d", hl, wl, p)}
	case capLen <= 0:
		return Layout{}, &ShapeError{"caption", "no caption rows"}
	}
	l := Layout{C: cfg.InChannels, Hl: hl, Wl: wl, P: p, Ht: hl / p, Wt: wl / p, N: capLen}
	l.Ni = l.Ht * l.Wt
	l.Nip = ceilTo(l.Ni, SeqMultiple)
	l.Lcp = ceilTo(capLen, SeqMultiple)
	// The reference indexes precomputed per-axis tables; positions past their
	// length have no rotation there.
	lens := cfg.AxesLens
	switch {
	case l.Lcp+1 >= lens[0]:
		return Layout{}, &ShapeError{"caption", fmt.Sprintf("%d padded rows exceed the RoPE table (axes_lens[0] = %d)", l.Lcp, lens[0])}
	case l.Ht > lens[1] || l.Wt > lens[2]:
		return Layout{}, &ShapeError{"latent", fmt.Sprintf("%d×%d tokens exceed the RoPE tables (axes_lens %v)", l.Ht, l.Wt, lens)}
	}
	return l, nil
}

// PatchDim is the width of one patch row, P·P·C.
func (l Layout) PatchDim() int { return l.P * l.P * l.C }

// Patchify turns the latent x [C, Hl, Wl] into patch rows [Nip, P·P·C]: tokens
// row-major over (hi, wi), features ordered (ph, pw, c) with c fastest, then
// padded to Nip rows by repeating the last patch (the reference does this
// before embedding; the pad rows are replaced by x_pad_token after it).
func (l Layout) Patchify(x []float32) []float32 {
	d := l.PatchDim()
	out := make([]float32, l.Nip*d)
	for hi := 0; hi < l.Ht; hi++ {
		for wi := 0; wi < l.Wt; wi++ {
			row := out[(hi*l.Wt+wi)*d:][:d]
			for ph := 0; ph < l.P; ph++ {
				for pw := 0; pw < l.P; pw++ {
					y, xx := hi*l.P+ph, wi*l.P+pw
					f := row[(ph*l.P+pw)*l.C:]
					for c := 0; c < l.C; c++ {
						f[c] = x[(c*l.Hl+y)*l.Wl+xx]
					}
				}
			}
		}
	}
	last := out[(l.Ni-1)*d:][:d]
	for i := l.Ni; i < l.Nip; i++ {
		copy(out[i*d:], last)
	}
	return out
}

// Unpatchify is the inverse of Patchify for the first Ni rows of y
// [≥Ni, P·P·C] → [C, Hl, Wl].
func (l Layout) Unpatchify(y []float32) []float32 {
	d := l.PatchDim()
	out := make([]float32, l.C*l.Hl*l.Wl)
	for hi := 0; hi < l.Ht; hi++ {
		for wi := 0; wi < l.Wt; wi++ {
			row := y[(hi*l.Wt+wi)*d:][:d]
			for ph := 0; ph < l.P; ph++ {
				for pw := 0; pw < l.P; pw++ {
					yy, xx := hi*l.P+ph, wi*l.P+pw
					f := row[(ph*l.P+pw)*l.C:]
					for c := 0; c < l.C; c++ {
						out[(c*l.Hl+yy)*l.Wl+xx] = f[c]
					}
				}
			}
		}
	}
	return out
}

// PadCaption returns the caption rows [n, D] padded to [Lcp, D] by repeating
// the last row (replaced by cap_pad_token after embedding).
func (l Layout) PadCaption(cap []float32, dim int) []float32 {
	out := make([]float32, l.Lcp*dim)
	copy(out, cap[:l.N*dim])
	last := cap[(l.N-1)*dim : l.N*dim]
	for i := l.N; i < l.Lcp; i++ {
		copy(out[i*dim:], last)
	}
	return out
}

// Pos is a token's (t, h, w) position in the RoPE grid.
type Pos [3]int

// ImagePositions returns the Nip image positions: (Lcp+1, hi, wi) for real
// tokens, (0, 0, 0) for pad tokens.
func (l Layout) ImagePositions() []Pos {
	pos := make([]Pos, l.Nip)
	for i := 0; i < l.Ni; i++ {
		pos[i] = Pos{l.Lcp + 1, i / l.Wt, i % l.Wt}
	}
	return pos
}

// CaptionPositions returns the Lcp caption positions (1+j, 0, 0); pad rows
// continue the count.
func (l Layout) CaptionPositions() []Pos {
	pos := make([]Pos, l.Lcp)
	for j := range pos {
		pos[j] = Pos{1 + j, 0, 0}
	}
	return pos
}

// RopeTables returns the interleaved RoPE cosines and sines [len(pos), hd/2]
// for the given positions: pair m of a head belongs to axis a (axes_dims
// split the head as [t | h | w]); its angle is float32(p_a · ω) with
// ω = 1/θ^(2k/d_a) and the product in float64, as the reference's
// precomputed tables; cos/sin are then taken of that float32 angle.
func RopeTables(cfg weights.DiTConfig, pos []Pos) (cos, sin []float32) {
	type freq struct {
		axis int
		w    float64
	}
	var freqs []freq
	for a, d := range cfg.AxesDims {
		for k := 0; k < d/2; k++ {
			freqs = append(freqs, freq{a, 1 / math.Pow(cfg.RopeTheta, float64(2*k)/float64(d))})
		}
	}
	half := len(freqs)
	cos = make([]float32, len(pos)*half)
	sin = make([]float32, len(pos)*half)
	for i, p := range pos {
		for m, f := range freqs {
			a := float64(float32(float64(p[f.axis]) * f.w))
			cos[i*half+m] = float32(math.Cos(a))
			sin[i*half+m] = float32(math.Sin(a))
		}
	}
	return cos, sin
}

// TimestepFeatures is the sinusoidal timestep embedding the t-MLP consumes:
// [cos(tt·f_k) | sin(tt·f_k)] with tt = t·t_scale and f_k =
// exp(−ln(10000)·k/half), all in float32 ops like the reference.
func TimestepFeatures(t float32, tScale float64, dim int) []float32 {
	half := dim / 2
	tt := t * float32(tScale)
	out := make([]float32, dim)
	nl := float32(-math.Log(10000))
	for k := 0; k < half; k++ {
		e := float32(k) * nl / float32(half)
		f := float32(math.Exp(float64(e)))
		arg := float64(tt * f)
		out[k] = float32(math.Cos(arg))
		out[half+k] = float32(math.Sin(arg))
	}
	return out
}
