package imageproc_test

import (
	"fmt"
	"image"
	"slices"
	"testing"

	"github.com/zimage/zimage/zimage/imageproc"
)

// TestResizePillow compares Resize and the grey conversion with Pillow 9.4
// (testdata/gen_pillow.py): Image.resize(LANCZOS) on RGB and L images, and
// convert("L").
func TestResizePillow(t *testing.T) {
	src, err := imageproc.DecodeFile("testdata/src_64x96.png", 0)
	if err != nil {
		t.Fatal(err)
	}
	rgb := imageproc.RGB8(src)
	for _, s := range [][2]int{{48, 32}, {160, 112}, {37, 23}, {96, 16}} {
		want, err := imageproc.DecodeFile(fmt.Sprintf("testdata/lanczos_rgb_%dx%d.png", s[0], s[1]), 0)
		if err != nil {
			t.Fatal(err)
		}
		got := imageproc.Resize(rgb, 3, 96, 64, s[0], s[1])
		comparePix(t, fmt.Sprint(s), got, imageproc.RGB8(want))
	}
	l, err := imageproc.DecodeFile("testdata/l_64x96.png", 0)
	if err != nil {
		t.Fatal(err)
	}
	grey := l.(*image.Gray).Pix
	// Mask of the RGB source thresholds Pillow's convert("L").
	m, _ := imageproc.Mask(src, 96, 64)
	for i, v := range grey {
		if (v >= 128) != (m[i] == 1) {
			t.Fatalf("pixel %d: grey %d, mask %v", i, v, m[i])
		}
	}
	want, err := imageproc.DecodeFile("testdata/lanczos_l_40x24.png", 0)
	if err != nil {
		t.Fatal(err)
	}
	comparePix(t, "L 40x24", imageproc.Resize(grey, 1, 96, 64, 40, 24), want.(*image.Gray).Pix)
}

func comparePix(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	n, maxd := 0, 0
	for i := range want {
		d := int(got[i]) - int(want[i])
		if d != 0 {
			n++
			maxd = max(maxd, d, -d)
		}
	}
	t.Errorf("%s: %d of %d values differ from Pillow, max %d", what, n, len(want), maxd)
}
