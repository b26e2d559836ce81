package main

import (
	"flag"
	"fmt"
	"image"
	"path/filepath"
	"strconv"

	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/imageproc"
)

// editFlags are generate's image-to-image / inpainting flags.
type editFlags struct {
	image, mask string
	strength    float64

	img, maskImg image.Image // read by load
}

func (f *editFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.image, "image", "", "init image (PNG or JPEG) for image-to-image; its size is the default --width/--height")
	fs.StringVar(&f.mask, "mask", "", "inpainting mask (PNG or JPEG, the image's size; white = repaint); needs --image")
	fs.Float64Var(&f.strength, "strength", 0, "with --image: how much to change it, in (0, 1] (default 0.6, 1.0 with --mask)")
}

// check validates the flags (set: those given on the command line).
func (f *editFlags) check(set map[string]bool) error {
	switch {
	case f.image == "" && f.mask != "":
		return usageError("--mask needs --image")
	case f.image == "" && set["strength"]:
		return usageError("--strength needs --image")
	case f.image != "" && set["strength"] && !(f.strength > 0 && f.strength <= 1):
		return usageError(fmt.Sprintf("--strength %v: want a value in (0, 1]", f.strength))
	}
	return nil
}

// keepsImageSize says the output size comes from the image (no --width or
// --height given).
func (f *editFlags) keepsImageSize(set map[string]bool) bool {
	return f.image != "" && !set["width"] && !set["height"]
}

// load reads the images, before the model is loaded.
func (f *editFlags) load() error {
	var err error
	if f.image == "" {
		return nil
	}
	if f.img, err = imageproc.DecodeFile(f.image, imageproc.DefaultMaxPixels); err != nil {
		return err
	}
	if f.mask == "" {
		return nil
	}
	if f.maskImg, err = imageproc.DecodeFile(f.mask, imageproc.DefaultMaxPixels); err != nil {
		return err
	}
	if is, ms := f.img.Bounds().Size(), f.maskImg.Bounds().Size(); is != ms {
		return usageError(fmt.Sprintf("--mask %s is %dx%d, the image %dx%d: they must be the same size", f.mask, ms.X, ms.Y, is.X, is.Y))
	}
	return nil
}

// apply sets req's image fields; with the image's size the request's
// Width and Height are 0.
func (f *editFlags) apply(set map[string]bool, req *zimage.Request) {
	if f.img == nil {
		return
	}
	req.Image, req.Mask, req.Strength = f.img, f.maskImg, f.strength
	if f.keepsImageSize(set) {
		req.Width, req.Height = 0, 0
	}
}

// metadata is what the output's text chunks record of the image input: the
// file names and the strength used.
func (f *editFlags) metadata() []textChunk {
	if f.image == "" {
		return nil
	}
	s := f.strength
	if s == 0 {
		s = zimage.DefaultImg2ImgStrength
		if f.mask != "" {
			s = zimage.DefaultInpaintStrength
		}
	}
	meta := []textChunk{{"image", filepath.Base(f.image)}}
	if f.mask != "" {
		meta = append(meta, textChunk{"mask", filepath.Base(f.mask)})
	}
	return append(meta, textChunk{"strength", strconv.FormatFloat(s, 'g', -1, 64)})
}
