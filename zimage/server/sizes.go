package server

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Image size limits. Sizes are multiples of 16: the VAE downsamples by 8 and
// the DiT patchifies 2×2 latents.
const (
	minSide = 64
	maxSide = 4096
)

// aspectSizes are the sizes of each aspect ratio at the base resolution 1024.
var aspectSizes = map[string][2]int{
	"1:1":  {1024, 1024},
	"4:3":  {1152, 864},
	"3:4":  {864, 1152},
	"16:9": {1280, 720},
	"9:16": {720, 1280},
}

// AspectRatios lists the accepted aspect ratios.
func AspectRatios() []string { return []string{"1:1", "4:3", "3:4", "16:9", "9:16"} }

// SizeFor returns the image size of an aspect ratio at a base resolution:
// the 1024 table scaled by resolution/1024, each side rounded to the nearest
// multiple of 16 (at least 16).
func SizeFor(aspect string, resolution int) (w, h int, ok bool) {
	s, ok := aspectSizes[aspect]
	if !ok {
		return 0, 0, false
	}
	scale := func(v int) int {
		r := int(math.Round(float64(v)*float64(resolution)/1024/16)) * 16
		return max(r, 16)
	}
	return scale(s[0]), scale(s[1]), true
}

// parseSize reads "W*H" or "WxH" (the hosted API writes the first, OpenAI
// the second) and checks the limits.
func parseSize(s string) (w, h int, err error) {
	sep := strings.IndexAny(s, "*xX×")
	if sep < 0 {
		return 0, 0, fmt.Errorf("size %q: want WIDTH*HEIGHT, e.g. 1024*1024", s)
	}
	_, sepLen := utf8First(s[sep:])
	w, err1 := strconv.Atoi(strings.TrimSpace(s[:sep]))
	h, err2 := strconv.Atoi(strings.TrimSpace(s[sep+sepLen:]))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("size %q: want WIDTH*HEIGHT, e.g. 1024*1024", s)
	}
	if err := checkSize(w, h); err != nil {
		return 0, 0, fmt.Errorf("size %q: %v", s, err)
	}
	return w, h, nil
}

func utf8First(s string) (rune, int) {
	for _, r := range s {
		return r, len(string(r))
	}
	return 0, 0
}

func checkSize(w, h int) error {
	if w < minSide || h < minSide || w > maxSide || h > maxSide {
		return fmt.Errorf("width and height must be between %d and %d", minSide, maxSide)
	}
	if w%16 != 0 || h%16 != 0 {
		return fmt.Errorf("width and height must be multiples of 16")
	}
	return nil
}

func sizeText(w, h int) string { return strconv.Itoa(w) + "*" + strconv.Itoa(h) }

// checkCaps applies the operator's limits (Config.MaxPixels, MaxWidth,
// MaxHeight) to an image size.
func (c *Config) checkCaps(w, h int) error {
	if w > c.MaxWidth || h > c.MaxHeight {
		return fmt.Errorf("%dx%d is larger than this server's maximum size %dx%d", w, h, c.MaxWidth, c.MaxHeight)
	}
	if w*h > c.MaxPixels {
		return fmt.Errorf("%dx%d is %d pixels; this server allows at most %d", w, h, w*h, c.MaxPixels)
	}
	return nil
}

// imagePrice is the credits one image of w×h costs: Price, or with
// PriceByPixels ceil(Price × w×h/1024² × Steps/8), at least 1.
func (c *Config) imagePrice(w, h int) int64 {
	if !c.PriceByPixels {
		return c.Price
	}
	// Exact integer ceiling: Price×w×h×Steps / (1024²×8).
	num := c.Price * int64(w) * int64(h) * int64(c.Steps)
	const den = 1024 * 1024 * 8
	return max((num+den-1)/den, 1)
}
