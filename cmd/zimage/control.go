package main

import (
	"flag"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/imageproc"
)

// controlFlags are generate's ControlNet flags.
type controlFlags struct {
	net, image string
	scale      float64

	img image.Image // read by load
}

func (c *controlFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.net, "controlnet", "", "ControlNet: a diffusers directory, a single .safetensors file "+
		"(Z-Image-Turbo-Fun-Controlnet-Union*.safetensors) or a repo id (Org/Name[@revision][/FILE.safetensors])")
	fs.StringVar(&c.image, "control-image", "", "control map (PNG or JPEG: canny edges, depth, pose…, already preprocessed), "+
		"resized to --width×--height like diffusers' ControlNet pipelines; needs --controlnet. "+
		"With --image and --mask: ControlNet inpainting (the size then defaults to the image's)")
	fs.Float64Var(&c.scale, "control-scale", zimage.DefaultControlScale, "ControlNet conditioning scale")
}

// check validates the flags (set: those given on the command line).
func (c *controlFlags) check(set map[string]bool) error {
	switch {
	case c.image != "" && c.net == "":
		return usageError("--control-image needs --controlnet")
	case c.net != "" && c.image == "":
		return usageError("--controlnet needs --control-image")
	case set["control-scale"] && c.image == "":
		return usageError("--control-scale needs --control-image")
	case c.scale == 0 || math.IsNaN(c.scale) || math.IsInf(c.scale, 0):
		// 0 would mean the default in zimage.Control; no control is no --control-image.
		return usageError(fmt.Sprintf("--control-scale %v: want a finite non-zero scale (leave out --control-image for none)", c.scale))
	}
	return nil
}

// load reads the control image, before the model is loaded.
func (c *controlFlags) load() error {
	if c.image == "" {
		return nil
	}
	var err error
	c.img, err = imageproc.DecodeFile(c.image, imageproc.DefaultMaxPixels)
	return err
}

// options returns the Load options of the flags.
func (c *controlFlags) options() []zimage.Option {
	if c.net == "" {
		return nil
	}
	return []zimage.Option{zimage.WithControlNet(c.net)}
}

// apply sets req's Control. The output size stays the request's (the
// --width/--height defaults, or the init image's with --image): diffusers'
// ControlNet pipelines do not take it from the control image.
func (c *controlFlags) apply(req *zimage.Request) {
	if c.img == nil {
		return
	}
	req.Control = &zimage.Control{Image: c.img, Scale: float32(c.scale)}
}

// meta returns the PNG text chunks of the flags.
func (c *controlFlags) meta() []textChunk {
	if c.image == "" {
		return nil
	}
	label := c.net
	if _, err := os.Stat(label); err == nil || !hub.LooksLikeRef(label) {
		label = filepath.Base(filepath.Clean(label))
	}
	return []textChunk{
		{"controlnet", label},
		{"control_scale", strconv.FormatFloat(c.scale, 'g', -1, 32)},
		{"control_image", filepath.Base(c.image)},
	}
}
