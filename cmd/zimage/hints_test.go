package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/zimage/zimage/weights/hub"
)

func TestHubHint(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "https://mirror.example")
	ref, _ := hub.ParseRef("Org/Model")
	netErr := &url.Error{Op: "Get", URL: "https://mirror.example/api", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{&hub.NotCachedError{Ref: ref, Err: hub.ErrOffline}, []string{"HF_HUB_OFFLINE is set", "zimage pull Org/Model", "--model DIR"}},
		{&hub.NotCachedError{Ref: ref}, []string{"zimage pull Org/Model", "--model DIR"}},
		{&hub.HTTPError{Status: 401}, []string{"HF_TOKEN", "--model DIR"}},
		{&hub.HTTPError{Status: 403}, []string{"HF_TOKEN", "gated"}},
		{&hub.HTTPError{Status: 404}, []string{"--model Org/Name[@revision]", "HF_ENDPOINT (https://mirror.example)"}},
		{&hub.HTTPError{Status: 503}, []string{"try again later", "HF_ENDPOINT", "zimage pull"}},
		{fmt.Errorf("zimage: load: hub: revision: giving up after 5 attempts: %w", netErr), []string{"cannot reach the hub at https://mirror.example", "HF_ENDPOINT", "HF_HUB_OFFLINE=1", "zimage pull", "--model DIR"}},
		{&hub.ChecksumError{File: "x"}, []string{"zimage pull"}},
	} {
		got := hubHint(fmt.Errorf("zimage: load Org/Model: %w", tc.err), "Org/Model")
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: hint %q lacks %q", tc.err, got, w)
			}
		}
	}
	if got := hubHint(errors.New("weights: x: bad"), ""); got != "" {
		t.Errorf("hint for a non-hub error: %q", got)
	}
}

// TestGenerateHubFailureHints: the command prints what to do next after a
// hub failure (a hub answering 401 and 404, and an offline empty cache).
func TestGenerateHubFailureHints(t *testing.T) {
	status := 401
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Error-Message", http.StatusText(status))
		w.WriteHeader(status)
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "x.png")
	for _, tc := range []struct {
		status  int
		offline bool
		want    string
	}{
		{401, false, "hint: set HF_TOKEN"},
		{404, false, "hint: check the repository id"},
		{0, true, "hint: HF_HUB_OFFLINE is set"},
	} {
		status = tc.status
		cmd := zimageCmd(t, "generate", "--model", "Org/Gated", "--prompt", "x", "--device", "cpu", "--out", out)
		cmd.Env = append(cmd.Env, "HF_ENDPOINT="+srv.URL, "HF_TOKEN=")
		if !tc.offline {
			cmd.Env = append(cmd.Env, "HF_HUB_OFFLINE=")
		}
		code, _, stderr := runProcess(t, cmd)
		if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--model DIR") {
			t.Errorf("status %d offline %v: exit %d, stderr %q; want a hint %q", tc.status, tc.offline, code, stderr, tc.want)
		}
	}
}

// TestGenerateChecksBeforeDownload: bad values are refused before the hub
// is asked for anything (a bad --width must not download 33 GB first).
func TestGenerateChecksBeforeDownload(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--width", "1000"},
		{"--steps", "0"},
		{"--seed", "-5"},
		{"--device", "npu"},
		{"--out", filepath.Join(dir, "no-such-dir", "x.png")},
		{"--out", filepath.Join(dir, "x.gif")},
	} {
		cmd := zimageCmd(t, append([]string{"generate", "--prompt", "x", "--out", filepath.Join(dir, "x.png")}, args...)...)
		cmd.Env = append(cmd.Env, "HF_ENDPOINT="+srv.URL, "HF_HUB_OFFLINE=")
		if code, _, stderr := runProcess(t, cmd); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, stderr)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the hub was asked %d time(s) before the flags were checked", n)
	}
}

// A LoRA file that cannot be read fails before the model is looked up.
func TestGenerateChecksLoRABeforeDownload(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.safetensors")
	cmd := zimageCmd(t, "generate", "--prompt", "x", "--out", filepath.Join(dir, "x.png"), "--lora", missing+":0.5")
	cmd.Env = append(cmd.Env, "HF_ENDPOINT="+srv.URL, "HF_HUB_OFFLINE=")
	code, _, stderr := runProcess(t, cmd)
	if code != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("exit %d, want 1 naming %s: %s", code, missing, stderr)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the hub was asked %d time(s) before the LoRA file was read", n)
	}
}
