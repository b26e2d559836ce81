package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSizeCaps: --max-pixels and --max-size apply to the hosted API's size
// and aspect ratio and to OpenAI's size, before anything is reserved.
func TestSizeCaps(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPixels = 96 * 96; c.MaxWidth = 128 })
	key, info := e.addKey(100, 0)
	for _, tc := range []struct {
		path string
		body map[string]any
		want int
		msg  string
	}{
		{"/api/generate", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "size": "96*96"}, 200, ""},
		{"/api/generate", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "size": "112*96"}, 400, "at most 9216"},
		{"/api/generate", map[string]any{"prompt": "x", "aspect_ratio": "1:1", "size": "144*64"}, 400, "maximum size 128x4096"},
		{"/v1/images/generations", map[string]any{"prompt": "x", "size": "64x128"}, 200, ""},
		{"/v1/images/generations", map[string]any{"prompt": "x", "size": "128x128"}, 400, "at most 9216"},
	} {
		r := do(t, "POST", e.url+tc.path, key, tc.body)
		require.Equal(t, tc.want, r.Status, "%v: %s", tc.body, r.Body)
		if tc.msg != "" {
			assert.Contains(t, string(r.Body), tc.msg)
			assert.Contains(t, string(r.Body), "size")
		}
	}
	e.waitIdle()
	assert.Equal(t, int64(70), e.key(info.ID).Credits, "only the two accepted requests were charged")

	// A resolution whose aspect ratios the limits refuse is a start error.
	_, err := New(context.Background(), Config{DataDir: t.TempDir(), Resolution: 1024, MaxPixels: 512 * 512})
	assert.ErrorContains(t, err, "resolution 1024")
}

// TestPriceByPixels: with PriceByPixels an image costs
// ceil(Price × W×H/1024² × Steps/8), at least 1.
func TestPriceByPixels(t *testing.T) {
	c := Config{Price: 16, PriceByPixels: true, Steps: 8}
	for _, tc := range []struct {
		w, h, steps int
		want        int64
	}{
		{1024, 1024, 8, 16}, {512, 512, 8, 4}, {64, 64, 8, 1}, {1024, 1024, 16, 32}, {1024, 1024, 4, 8},
		{1280, 720, 8, 15}, {2048, 2048, 8, 64}, {1024, 1040, 8, 17},
	} {
		c.Steps = tc.steps
		assert.Equal(t, tc.want, c.imagePrice(tc.w, tc.h), "%dx%d at %d steps", tc.w, tc.h, tc.steps)
	}
	c.PriceByPixels = false
	assert.Equal(t, int64(16), c.imagePrice(2048, 2048), "flat")

	e := newEnv(t, func(c *Config) { c.Price = 16; c.PriceByPixels = true; c.Steps = 16 })
	key, info := e.addKey(100, 0)
	r := do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "x", "size": "512x512", "n": 2})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Equal(t, int64(100-2*8), e.key(info.ID).Credits, "2 images × ceil(16 × 1/4 × 2)")
	r = do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "x", "size": "2048x2048"})
	assert.Equal(t, http.StatusPaymentRequired, r.Status)
	assert.True(t, strings.Contains(string(r.Body), "costs 128"), "%s", r.Body)
}
