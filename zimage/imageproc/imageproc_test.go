package imageproc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/imageproc"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// TestTensorFixture: the fixture's init PNG preprocessed like
// VaeImageProcessor is bit-exact, and the mask PNG gives the binarized mask.
func TestTensorFixture(t *testing.T) {
	for _, c := range []struct{ dir, cas string }{
		{"e2e_img2img", "en_64x96_seed42_strength0.6"},
		{"e2e_inpaint", "en_64x96_seed42_strength0.7"},
	} {
		img, err := imageproc.DecodeFile(fixturefs.Path(t, "fixtures/"+c.dir+"/init_64x96.png"), 0)
		if err != nil {
			t.Fatal(err)
		}
		fx := fixture.Open(t, "fixtures/"+c.dir+"/"+c.cas+".safetensors")
		got, err := imageproc.Tensor(img, 96, 64)
		if err != nil {
			t.Fatal(err)
		}
		if want := fx.F32(t, "init_image_preprocessed"); !slices.Equal(got, want) {
			t.Errorf("%s: init_image_preprocessed differs", c.dir)
		}
		if c.dir != "e2e_inpaint" {
			continue
		}
		m, err := imageproc.DecodeFile(fixturefs.Path(t, "fixtures/e2e_inpaint/mask_rect_64x96.png"), 0)
		if err != nil {
			t.Fatal(err)
		}
		mask, err := imageproc.Mask(m, 96, 64)
		if err != nil {
			t.Fatal(err)
		}
		if want := fx.F32(t, "mask_preprocessed"); !slices.Equal(mask, want) {
			t.Errorf("mask_preprocessed differs")
		}
		// The same mask as RGB gives the same binary mask (convert("L")).
		rgb := image.NewNRGBA(m.Bounds())
		for y := 0; y < 64; y++ {
			for x := 0; x < 96; x++ {
				rgb.Set(x, y, m.At(x, y))
			}
		}
		if mask2, _ := imageproc.Mask(rgb, 96, 64); !slices.Equal(mask2, mask) {
			t.Errorf("RGB mask differs from the grey one")
		}
	}
}

func encodePNG(t *testing.T, img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugePNG is a valid PNG header claiming w×h pixels with almost no data.
func hugePNG(t *testing.T, w, h uint32) []byte {
	b := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	// IHDR data starts at 16 (8 signature + 4 length + 4 type); CRC after 13 bytes.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// TestDecodeErrors: garbage, truncated data and over-limit headers are
// *Error; the size limit applies before decoding (a 10⁵×10⁵ header with no
// pixel data is refused as too large, not as corrupt).
func TestDecodeErrors(t *testing.T) {
	small := encodePNG(t, image.NewRGBA(image.Rect(0, 0, 8, 4)))
	for name, c := range map[string]struct {
		data  []byte
		max   int
		large bool
	}{
		"garbage":   {[]byte("GIF89a not really"), 0, false},
		"empty":     {nil, 0, false},
		"truncated": {small[:len(small)-20], 0, false},
		"limit":     {small, 31, true},
		"huge":      {hugePNG(t, 100000, 100000), 0, true},
	} {
		_, err := imageproc.Decode(bytes.NewReader(c.data), "image", c.max)
		var ie *imageproc.Error
		if !errors.As(err, &ie) {
			t.Errorf("%s: err %v, want *imageproc.Error", name, err)
			continue
		}
		if errors.Is(err, imageproc.ErrTooLarge) != c.large {
			t.Errorf("%s: %v: ErrTooLarge %v, want %v", name, err, !c.large, c.large)
		}
	}
	img, err := imageproc.Decode(bytes.NewReader(small), "image", 32)
	if err != nil || img.Bounds().Dx() != 8 {
		t.Fatalf("8×4 PNG at limit 32: %v", err)
	}
}

// TestDecodeJPEG: JPEG decodes (a flat colour stays flat within JPEG error).
func TestDecodeJPEG(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 32, 16))
	for i := range src.Pix {
		src.Pix[i] = []byte{200, 100, 50, 255}[i%4]
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	img, err := imageproc.Decode(&buf, "photo.jpg", 0)
	if err != nil {
		t.Fatal(err)
	}
	rgb := imageproc.RGB8(img)
	for i, v := range rgb {
		if d := int(v) - []int{200, 100, 50}[i%3]; d < -3 || d > 3 {
			t.Fatalf("value %d = %d", i, v)
		}
	}
}

// TestResize: same size is a copy; a constant image stays constant at any
// scale (the weights sum to one in fixed point); sizes are as asked.
func TestResize(t *testing.T) {
	src := make([]byte, 3*37*23)
	for i := range src {
		src[i] = 77
	}
	if got := imageproc.Resize(src, 3, 37, 23, 37, 23); !slices.Equal(got, src) {
		t.Fatal("same-size resize changed the image")
	}
	for _, s := range [][2]int{{16, 16}, {96, 64}, {37, 5}, {1, 1}} {
		got := imageproc.Resize(src, 3, 37, 23, s[0], s[1])
		if len(got) != 3*s[0]*s[1] {
			t.Fatalf("%v: %d values", s, len(got))
		}
		for i, v := range got {
			if v != 77 {
				t.Fatalf("%v: value %d = %d", s, i, v)
			}
		}
	}
}

// TestTensorResizes: an image of another size is resized to the target.
func TestTensorResizes(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 50, 30))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	x, err := imageproc.Tensor(img, 32, 16)
	if err != nil || len(x) != 3*32*16 {
		t.Fatalf("%d values, %v", len(x), err)
	}
	for _, v := range x {
		if v != 1 {
			t.Fatalf("white resized to %v", v)
		}
	}
	if w, h := imageproc.DefaultSize(img, 16); w != 48 || h != 16 {
		t.Errorf("DefaultSize = %d×%d", w, h)
	}
	m, _ := imageproc.Mask(img, 8, 8)
	if len(m) != 64 || m[0] != 1 {
		t.Errorf("mask %v", m[:1])
	}
	if _, err := imageproc.Tensor(img, 0, 16); err == nil {
		t.Error("zero target size: no error")
	}
}

// FuzzDecode: arbitrary bytes never panic and never exceed the limit.
func FuzzDecode(f *testing.F) {
	f.Add(encodePNG(&testing.T{}, image.NewRGBA(image.Rect(0, 0, 3, 2))))
	f.Add(hugePNG(&testing.T{}, 3000, 3000))
	var buf bytes.Buffer
	_ = jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 9, 9)), nil)
	f.Add(buf.Bytes())
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add(exifJPEG(&testing.T{}, 6, binary.BigEndian))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := imageproc.Decode(bytes.NewReader(data), "fuzz", 1<<16)
		if err != nil {
			return
		}
		b := img.Bounds()
		if b.Dx()*b.Dy() > 1<<16 {
			t.Fatalf("decoded %v over the limit", b)
		}
		if _, err := imageproc.Tensor(img, 16, 16); err != nil {
			t.Fatal(err)
		}
		if _, err := imageproc.Mask(img, 16, 16); err != nil {
			t.Fatal(err)
		}
	})
}
