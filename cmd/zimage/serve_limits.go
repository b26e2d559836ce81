package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/server"
)

// parseMaxSize reads --max-size WxH.
func parseMaxSize(s string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(strings.ToLower(s), "x")
	if ok {
		w, err = strconv.Atoi(ws)
		if err == nil {
			h, err = strconv.Atoi(hs)
		}
	}
	if !ok || err != nil || w < 64 || h < 64 {
		return 0, 0, fmt.Errorf("--max-size %q: want WIDTHxHEIGHT, each at least 64, e.g. 2048x2048", s)
	}
	return w, h, nil
}

// calibration is one measured small generation: what the default task
// timeout is derived from.
type calibration struct {
	side int           // generated at side×side
	text time.Duration // tokenizer and text encoder
	step time.Duration // one denoising step
	vae  time.Duration // VAE decode
}

// calibrationSide is the size of the calibration image: small enough to be
// quick on a CPU, large enough that the per-pixel costs dominate.
const calibrationSide = 256

// calibrate generates one calibrationSide² image with one step and times
// its stages. On a CPU with the real model it takes about a minute (and
// pages the weights in); on a GPU, seconds.
func calibrate(ctx context.Context, p *zimage.Pipeline) (calibration, error) {
	res, err := p.Run(ctx, zimage.Request{Prompt: "calibration", Width: calibrationSide, Height: calibrationSide, Steps: 1})
	if err != nil {
		return calibration{}, fmt.Errorf("timing one denoising step: %w", err)
	}
	c := calibration{side: calibrationSide, text: res.Timings.Tokenize + res.Timings.TextEncoder, step: res.Timings.Denoise, vae: res.Timings.VAE}
	if len(res.Timings.Steps) > 0 {
		c.step = res.Timings.Steps[0]
	}
	return c, nil
}

// estimate is the time of one image of px pixels at steps, scaled
// linearly in pixels from the calibration (the GEMMs dominate; attention,
// which grows faster, is covered by deriveTimeout's safety factor).
func (c calibration) estimate(px, steps int) time.Duration {
	scale := float64(px) / float64(c.side*c.side)
	return c.text + time.Duration(float64(steps)*float64(c.step)*scale) + time.Duration(float64(c.vae)*scale)
}

// Bounds of the derived task timeout.
const (
	minTaskTimeout = 10 * time.Minute
	maxTaskTimeout = 24 * time.Hour
)

// deriveTimeout is the default task timeout: twice the estimated time of
// the largest task the limits allow (n images of px pixels at steps) plus a
// minute, rounded up to a minute, at least 10 minutes. A limit above 24 h
// means the device cannot serve these limits: an error says what to change.
func deriveTimeout(c calibration, px, steps, n int) (time.Duration, time.Duration, error) {
	one := c.estimate(px, steps)
	d := (2*time.Duration(n)*one + time.Minute + time.Minute - 1).Truncate(time.Minute)
	d = max(d, minTaskTimeout)
	if d > maxTaskTimeout {
		return 0, one, fmt.Errorf("one step at %dx%d took %s here, so the largest request allowed (%d image(s) of %d pixels at %d steps) "+
			"would take about %s: lower --max-pixels/--max-size or --max-n, use a GPU (--device cuda), or set --task-timeout yourself",
			c.side, c.side, c.step.Round(time.Millisecond), n, px, steps, (time.Duration(n) * one).Round(time.Second))
	}
	return d, one, nil
}

// autoTaskTimeout times one step on the loaded pipeline and derives the
// task timeout for the server's limits (cfg, defaults filled in).
func autoTaskTimeout(ctx context.Context, p *zimage.Pipeline, cfg server.Config, log *slog.Logger) (time.Duration, error) {
	log.Info("timing one denoising step for the default task timeout", "size", fmt.Sprintf("%dx%d", calibrationSide, calibrationSide))
	c, err := calibrate(ctx, p)
	if err != nil {
		return 0, err
	}
	px := min(cfg.MaxPixels, cfg.MaxWidth*cfg.MaxHeight)
	d, one, err := deriveTimeout(c, px, cfg.Steps, cfg.MaxN)
	if err != nil {
		return 0, err
	}
	log.Info("task timeout derived", "task_timeout", d, "step", c.step.Round(time.Millisecond),
		"largest_image_estimate", one.Round(time.Second), "largest_image_pixels", px, "steps", cfg.Steps, "max_n", cfg.MaxN)
	return d, nil
}

// graceConfig maps --retry-grace to server.Config.RetryGrace, where 0 means
// the default and a negative value "at once".
func graceConfig(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
