// Package hub finds and downloads models in the Hugging Face Hub cache. It
// reads and writes the cache exactly as huggingface_hub does
// (models--Org--Name/{blobs,snapshots/<commit>,refs/<revision>}), so a model
// fetched by diffusers is reused here and a model fetched here is usable by
// diffusers.
//
// Downloads go through the hub's HTTP API: the revision is resolved to a
// commit, each file's metadata comes from a HEAD of its resolve URL, and its
// bytes are fetched (resuming a previous .incomplete file with a Range
// request), verified against the hash the hub reports, and moved into the
// cache atomically.
package hub

import (
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults used when neither the Client nor the environment says otherwise.
const (
	DefaultEndpoint = "https://huggingface.co"
	DefaultRevision = "main"
	// DefaultRepo is the model zimage pulls when none is named.
	DefaultRepo = "Tongyi-MAI/Z-Image-Turbo"
)

// Client downloads from one hub endpoint into one cache directory. The zero
// value is not usable; start from FromEnv and adjust fields before the first
// call. A Client is safe for concurrent use once configured.
type Client struct {
	Endpoint string       // e.g. https://huggingface.co ($HF_ENDPOINT)
	CacheDir string       // the hub cache ($HF_HUB_CACHE, default $HF_HOME/hub)
	Token    string       // bearer token ($HF_TOKEN or the token file); "" = anonymous
	Offline  bool         // use the cache only ($HF_HUB_OFFLINE)
	HTTP     *http.Client // nil = a client with sensible timeouts

	Parallel int           // files downloaded at once (0 = 4)
	Retries  int           // attempts per file without progress (0 = 5)
	Backoff  time.Duration // first retry delay, doubled per retry up to 30 s (0 = 1 s)
	// StallTimeout aborts (and retries) a transfer that receives nothing
	// for this long (0 = 60 s).
	StallTimeout time.Duration

	// Progress, when set, receives download progress (from several
	// goroutines, serialized; at most every ProgressEvery, plus once at
	// the end of each pull).
	Progress      func(Progress)
	ProgressEvery time.Duration // 0 = 200 ms
	Logger        *slog.Logger  // nil = discard
	UserAgent     string        // "" = "zimage"
}

// FromEnv returns a Client configured like huggingface_hub from the
// environment: HF_ENDPOINT, HF_HOME (default $XDG_CACHE_HOME/huggingface or
// ~/.cache/huggingface), HF_HUB_CACHE (default $HF_HOME/hub; the legacy
// HUGGINGFACE_HUB_CACHE is honoured), HF_TOKEN (else the file at
// HF_TOKEN_PATH, default $HF_HOME/token) and HF_HUB_OFFLINE.
func FromEnv() *Client {
	c := &Client{Endpoint: DefaultEndpoint}
	if e := strings.TrimSpace(os.Getenv("HF_ENDPOINT")); e != "" {
		c.Endpoint = e
	}
	c.Endpoint = strings.TrimRight(c.Endpoint, "/")
	home := HFHome()
	c.CacheDir = firstEnv("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(home, "hub")
	}
	c.CacheDir = expandHome(c.CacheDir)
	c.Token = strings.TrimSpace(firstEnv("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"))
	if c.Token == "" {
		path := os.Getenv("HF_TOKEN_PATH")
		if path == "" {
			path = filepath.Join(home, "token")
		}
		if b, err := os.ReadFile(expandHome(path)); err == nil {
			c.Token = strings.TrimSpace(string(b))
		}
	}
	c.Offline = envTrue(os.Getenv("HF_HUB_OFFLINE"))
	return c
}

// HFHome returns the huggingface_hub home directory: $HF_HOME, else
// $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
func HFHome() string {
	if h := os.Getenv("HF_HOME"); h != "" {
		return expandHome(h)
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(expandHome(x), "huggingface")
	}
	return filepath.Join(expandHome("~"), ".cache", "huggingface")
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// envTrue parses a boolean environment variable the way huggingface_hub does.
func envTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[1:])
		}
	}
	return p
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Client) parallel() int {
	if c.Parallel > 0 {
		return c.Parallel
	}
	return 4
}

func (c *Client) retries() int {
	if c.Retries > 0 {
		return c.Retries
	}
	return 5
}

func (c *Client) backoff() time.Duration {
	if c.Backoff > 0 {
		return c.Backoff
	}
	return time.Second
}

func (c *Client) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return "zimage"
}

// httpClient returns the configured client. Redirects are never followed
// automatically: the resolve response's own headers carry the file's hash,
// and the CDN must not see the token.
func (c *Client) httpClient() *http.Client {
	base := c.HTTP
	if base == nil {
		base = defaultHTTP
	}
	cl := *base
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cl
}

// defaultHTTP bounds connection set-up and time to first byte, never the
// transfer of a large body.
var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   16,
	ForceAttemptHTTP2:     true,
}}
