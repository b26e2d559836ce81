// Package imageproc turns user images (PNG, JPEG) into the tensors the
// image-conditioned pipelines take, the way diffusers' VaeImageProcessor
// does: RGB in [−1, 1] for init and control images, a binarized grey mask for
// inpainting, resized with a Lanczos filter that follows Pillow's when the
// image is not the requested size.
package imageproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registered decoders: PNG and JPEG only
	_ "image/png"
	"io"
	"os"
)

// DefaultMaxPixels bounds the pixel count of a decoded input image (a
// 33-megapixel photo passes; larger inputs are refused before decoding).
const DefaultMaxPixels = 1 << 25

// Error reports an image that cannot be used; Reason says why.
type Error struct {
	Name   string // what the image is ("image", "mask", a file name)
	Reason string
	Err    error // the decoder's error, if any
}

func (e *Error) Error() string {
	if e.Name == "" {
		return "imageproc: " + e.Reason
	}
	return fmt.Sprintf("imageproc: %s: %s", e.Name, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTooLarge is wrapped by the *Error of an image over the pixel limit.
var ErrTooLarge = errors.New("image too large")

// Decode reads a PNG or JPEG image. Its header is checked first: an image of
// more than maxPixels pixels (DefaultMaxPixels when maxPixels ≤ 0) or with a
// zero side is refused before its pixels are decoded. A JPEG's EXIF
// orientation is applied, as diffusers' load_image does. name labels errors.
func Decode(r io.Reader, name string, maxPixels int) (image.Image, error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	// DecodeConfig reads only the header; keep what it consumed for Decode.
	var hdr bytes.Buffer
	br := bufio.NewReader(io.TeeReader(r, &hdr))
	cfg, format, err := image.DecodeConfig(br)
	if err != nil {
		return nil, &Error{name, "not a PNG or JPEG image: " + err.Error(), err}
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, &Error{Name: name, Reason: fmt.Sprintf("%s image of size %d×%d", format, cfg.Width, cfg.Height)}
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, &Error{name, fmt.Sprintf("%d×%d pixels exceed the limit of %d", cfg.Width, cfg.Height, maxPixels), ErrTooLarge}
	}
	orientation := 1
	if format == "jpeg" {
		// DecodeConfig read past the APP1 segments to the frame header.
		orientation = jpegOrientation(hdr.Bytes())
	}
	img, _, err := image.Decode(io.MultiReader(&hdr, r))
	if err != nil {
		return nil, &Error{name, fmt.Sprintf("decoding %s: %v", format, err), err}
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, &Error{Name: name, Reason: fmt.Sprintf("decoded %v, header said %d×%d", b, cfg.Width, cfg.Height)}
	}
	return orient(img, orientation), nil
}

// DecodeFile is Decode on a file; errors name the path.
func DecodeFile(path string, maxPixels int) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f, path, maxPixels)
}

// DefaultSize is the output size upstream derives from an input image when
// the request names none: each side rounded down to a multiple of mult.
// It is zero when a side is smaller than mult.
func DefaultSize(img image.Image, mult int) (w, h int) {
	b := img.Bounds()
	return b.Dx() - b.Dx()%mult, b.Dy() - b.Dy()%mult
}

// RGB8 returns the image's pixels as interleaved 8-bit RGB (alpha dropped,
// colours un-premultiplied; grey replicated), Pillow's convert("RGB").
func RGB8(img image.Image) []byte {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]byte, 0, 3*w*h)
	switch m := img.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+4*w]
			for x := 0; x < w; x++ {
				out = append(out, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
		return out
	case *image.Gray:
		for y := 0; y < h; y++ {
			for _, v := range m.Pix[y*m.Stride : y*m.Stride+w] {
				out = append(out, v, v, v)
			}
		}
		return out
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			out = append(out, c.R, c.G, c.B)
		}
	}
	return out
}

// grey8 returns the image as 8-bit luminance, Pillow's convert("L"):
// L = (19595·R + 38470·G + 7471·B + 2^15) >> 16 on RGB, the value itself on
// grey images.
func grey8(img image.Image) []byte {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if m, ok := img.(*image.Gray); ok {
		out := make([]byte, 0, w*h)
		for y := 0; y < h; y++ {
			out = append(out, m.Pix[y*m.Stride:y*m.Stride+w]...)
		}
		return out
	}
	return luma(RGB8(img))
}

func luma(rgb []byte) []byte {
	out := make([]byte, len(rgb)/3)
	for i := range out {
		r, g, b := uint32(rgb[3*i]), uint32(rgb[3*i+1]), uint32(rgb[3*i+2])
		out[i] = byte((r*19595 + g*38470 + b*7471 + 0x8000) >> 16)
	}
	return out
}

func isGrey(img image.Image) bool {
	switch img.(type) {
	case *image.Gray, *image.Gray16:
		return true
	}
	return false
}

// Tensor returns img as the VAE input [3, h, w] in [−1, 1]: resized to w×h
// (Lanczos, see Resize) when its size differs, then v/255·2 − 1 in float32
// like VaeImageProcessor (pil_to_numpy, normalize).
func Tensor(img image.Image, w, h int) ([]float32, error) {
	if w <= 0 || h <= 0 {
		return nil, &Error{Name: "image", Reason: fmt.Sprintf("target size %d×%d", w, h)}
	}
	b := img.Bounds()
	rgb := RGB8(img)
	if b.Dx() != w || b.Dy() != h {
		rgb = Resize(rgb, 3, b.Dx(), b.Dy(), w, h)
	}
	plane := w * h
	out := make([]float32, 3*plane)
	for i := 0; i < plane; i++ {
		for c := 0; c < 3; c++ {
			v := float32(rgb[3*i+c]) / 255
			out[c*plane+i] = 2*v - 1
		}
	}
	return out, nil
}

// Mask returns the inpainting mask [h, w] of 0 and 1 (1 = repaint), the
// mask processor's steps: resize to w×h when the size differs (Lanczos, in
// the image's own mode), convert to grey, /255, binarize at 0.5.
func Mask(img image.Image, w, h int) ([]float32, error) {
	if w <= 0 || h <= 0 {
		return nil, &Error{Name: "mask", Reason: fmt.Sprintf("target size %d×%d", w, h)}
	}
	b := img.Bounds()
	var l []byte
	switch {
	case b.Dx() == w && b.Dy() == h:
		l = grey8(img)
	case isGrey(img):
		l = Resize(grey8(img), 1, b.Dx(), b.Dy(), w, h)
	default:
		l = luma(Resize(RGB8(img), 3, b.Dx(), b.Dy(), w, h))
	}
	out := make([]float32, w*h)
	for i, v := range l {
		if float32(v)/255 >= 0.5 {
			out[i] = 1
		}
	}
	return out, nil
}
