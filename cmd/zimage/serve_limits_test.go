package main

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/server"
)

func TestDeriveTimeout(t *testing.T) {
	// A GPU-like device: the floor.
	gpu := calibration{side: 256, text: 200 * time.Millisecond, step: 30 * time.Millisecond, vae: 50 * time.Millisecond}
	d, _, err := deriveTimeout(gpu, 1024*1024, 8, 4)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Minute, d)

	// A CPU-like device: 20 s a step at 256² is ~43 min for a 1024² image at
	// 8 steps, so the default (4 images) gets ~5.8 h, never the 10 min that
	// timed out every request.
	cpu := calibration{side: 256, text: 30 * time.Second, step: 20 * time.Second, vae: 10 * time.Second}
	d, one, err := deriveTimeout(cpu, 1024*1024, 8, 4)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second+8*20*16*time.Second+16*10*time.Second, one)
	assert.Equal(t, (2*4*one + 2*time.Minute - 1).Truncate(time.Minute), d)
	assert.Greater(t, d, 5*time.Hour)

	// Limits this device cannot serve within a day: refused, saying what to change.
	_, _, err = deriveTimeout(cpu, 4096*4096, 8, 4)
	require.Error(t, err)
	for _, s := range []string{"--max-pixels", "--max-n", "--task-timeout", "--device cuda"} {
		assert.Contains(t, err.Error(), s)
	}
}

func TestParseMaxSize(t *testing.T) {
	w, h, err := parseMaxSize("2048x1536")
	require.NoError(t, err)
	assert.Equal(t, [2]int{2048, 1536}, [2]int{w, h})
	for _, bad := range []string{"", "2048", "x", "10x10", "ax b", "2048*2048"} {
		_, _, err := parseMaxSize(bad)
		assert.Error(t, err, bad)
	}
}

// TestAutoTaskTimeout times one step of the tiny model and derives the
// (floor) timeout, logging how.
func TestAutoTaskTimeout(t *testing.T) {
	p, err := zimage.Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), zimage.WithDevice("cpu"))
	require.NoError(t, err)
	defer p.Close()
	var logs bytes.Buffer
	d, err := autoTaskTimeout(context.Background(), p, server.Config{MaxPixels: 1024 * 1024, MaxWidth: 4096, MaxHeight: 4096, Steps: 8, MaxN: 4},
		slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Equal(t, minTaskTimeout, d)
	assert.Contains(t, logs.String(), "task timeout derived")
}

func TestServeLimitFlags(t *testing.T) {
	t.Setenv("ZIMAGE_MODEL", "")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--price-by", "token"}, 2, "--price-by"},
		{[]string{"--steps", "0"}, 2, "--steps"},
		{[]string{"--max-size", "10x10"}, 2, "--max-size"},
		{[]string{"--max-pixels", "100"}, 2, "--max-pixels"},
		{[]string{"--task-timeout", "-1s"}, 2, "--task-timeout"},
		// Checked before the model loads: the missing model is not the error.
		{[]string{"--max-pixels", "500000"}, 1, "resolution 1024"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--model", "/nonexistent"}, tc.args...)
		code := run(context.Background(), args, &out, &errOut)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut.String())
		assert.Contains(t, errOut.String(), tc.msg, "%v", tc.args)
	}
}
