package fixturefs

import (
	"image"
	"image/png"
	"os"
	"testing"
)

// RGB returns an image's pixels as packed 8-bit R, G, B values, row by row
// (alpha is dropped; colours are as image.Color.RGBA gives them).
func RGB(img image.Image) []byte {
	bd := img.Bounds()
	out := make([]byte, 0, 3*bd.Dx()*bd.Dy())
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			out = append(out, uint8(r>>8), uint8(g>>8), uint8(b>>8))
		}
	}
	return out
}

// ReadPNG decodes the PNG file at path (a file system path; use Path for a
// fixture) into RGB values.
func ReadPNG(tb testing.TB, path string) []byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		tb.Fatalf("testdata: %s: %v", path, err)
	}
	return RGB(img)
}

// PixelDiff measures how far two 8-bit buffers differ, in the terms of the
// fixtures README's image criteria.
type PixelDiff struct {
	Total int     // values compared
	Off1  int     // values more than one level off
	Max   int     // largest |got−want|
	Mean  float64 // mean |got−want|
}

// FracOff1 is the fraction of values more than one level off.
func (d PixelDiff) FracOff1() float64 { return float64(d.Off1) / float64(d.Total) }

// ComparePixels compares got with want value by value; the test fails at
// once if their lengths differ.
func ComparePixels(tb testing.TB, got, want []byte) PixelDiff {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("image size %d values, want %d", len(got), len(want))
	}
	d := PixelDiff{Total: len(want)}
	var sum float64
	for i := range want {
		v := int(got[i]) - int(want[i])
		v = max(v, -v)
		if v > 1 {
			d.Off1++
		}
		d.Max = max(d.Max, v)
		sum += float64(v)
	}
	d.Mean = sum / float64(len(want))
	return d
}
