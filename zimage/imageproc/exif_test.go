package imageproc_test

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"testing"

	"github.com/zimage/zimage/zimage/imageproc"
)

// exifJPEG is a 32×16 JPEG, left half red, right half blue above and green
// below, with an EXIF orientation tag (byte order bo).
func exifJPEG(t *testing.T, orientation uint16, bo binary.ByteOrder) []byte {
	src := image.NewRGBA(image.Rect(0, 0, 32, 16))
	for y := 0; y < 16; y++ {
		for x := 0; x < 32; x++ {
			c := color.RGBA{255, 0, 0, 255}
			switch {
			case x >= 16 && y < 8:
				c = color.RGBA{0, 0, 255, 255}
			case x >= 16:
				c = color.RGBA{0, 255, 0, 255}
			}
			src.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	tiff := make([]byte, 8+2+12+4)
	if bo == binary.LittleEndian {
		copy(tiff, "II")
	} else {
		copy(tiff, "MM")
	}
	bo.PutUint16(tiff[2:], 42)
	bo.PutUint32(tiff[4:], 8)
	bo.PutUint16(tiff[8:], 1)       // one entry
	bo.PutUint16(tiff[10:], 0x0112) // Orientation
	bo.PutUint16(tiff[12:], 3)      // SHORT
	bo.PutUint32(tiff[14:], 1)
	bo.PutUint16(tiff[18:], orientation)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(app1[2:], uint16(len(seg)+2))
	app1 = append(app1, seg...)
	b := buf.Bytes()
	return append(append(append([]byte{}, b[:2]...), app1...), b[2:]...)
}

// TestEXIFOrientation: the corners of each orientation (top-left, top-right,
// bottom-left, bottom-right) are where Pillow 9.4's ImageOps.exif_transpose
// puts them for the same picture, and the size swaps for 5–8.
func TestEXIFOrientation(t *testing.T) {
	want := map[uint16]string{1: "RBRG", 2: "BRGR", 3: "GRBR", 4: "RGRB", 5: "RRBG", 6: "RRGB", 7: "GBRR", 8: "BGRR"}
	for o, corners := range want {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			img, err := imageproc.Decode(bytes.NewReader(exifJPEG(t, o, bo)), "photo.jpg", 0)
			if err != nil {
				t.Fatal(o, err)
			}
			w, h := img.Bounds().Dx(), img.Bounds().Dy()
			if (o >= 5) != (w == 16 && h == 32) {
				t.Errorf("orientation %d: size %dx%d", o, w, h)
				continue
			}
			got := ""
			for _, p := range []image.Point{{2, 2}, {w - 3, 2}, {2, h - 3}, {w - 3, h - 3}} {
				r, _, b, _ := img.At(p.X, p.Y).RGBA()
				switch {
				case r>>8 > 200:
					got += "R"
				case b>>8 > 200:
					got += "B"
				default:
					got += "G"
				}
			}
			if got != corners {
				t.Errorf("orientation %d (%v): corners %s, want %s", o, bo, got, corners)
			}
		}
	}
}
