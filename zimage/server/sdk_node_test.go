package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nodeSDK returns node and the directory of testdata/openai-sdk (or
// $ZIMAGE_OPENAI_SDK_DIR) when the official OpenAI Node SDK is installed
// there (scripts/openai-sdk-install.sh); the test is skipped otherwise.
func nodeSDK(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir = os.Getenv("ZIMAGE_OPENAI_SDK_DIR")
	if dir == "" {
		dir, err = filepath.Abs(filepath.Join("testdata", "openai-sdk"))
		require.NoError(t, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Skip("the OpenAI Node SDK is not installed: run scripts/openai-sdk-install.sh")
	}
	return node, dir
}

// sdkRun runs testdata/openai-sdk/sdk.mjs and decodes its JSON line.
func sdkRun(t *testing.T, node, dir string, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"sdk.mjs"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "node sdk.mjs %v: %s", args, out)
	var res map[string]any
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	return res
}

// headerLog records the retry headers of the requests a handler gets.
type headerLog struct {
	mu      sync.Mutex
	retries []string // X-Stainless-Retry-Count of each generation request
	idem    []string // Idempotency-Key of each
}

func (l *headerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/images/generations" {
			l.mu.Lock()
			l.retries = append(l.retries, r.Header.Get("X-Stainless-Retry-Count"))
			l.idem = append(l.idem, r.Header.Get("Idempotency-Key"))
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *headerLog) take() (retries, idem []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	retries, idem = l.retries, l.idem
	l.retries, l.idem = nil, nil
	return retries, idem
}

// TestOpenAINodeSDK runs the official OpenAI Node SDK against the server:
// a call whose timeout is shorter than the generation, with the SDK's
// default retries, is one task charged once when a try gets the image,
// and one task cancelled unbilled when every try times out. It also lists
// the models through the SDK.
func TestOpenAINodeSDK(t *testing.T) {
	node, dir := nodeSDK(t)
	gen := newTestGen()
	gen.slow = 2500 * time.Millisecond
	e := startServer(t, t.TempDir(), gen, func(c *Config) { c.RetryGrace = 3 * time.Second })
	log := &headerLog{}
	ts := httptest.NewServer(log.wrap(e.srv.Handler()))
	defer ts.Close()
	base := ts.URL + "/v1"
	key, info := e.addKey(100, 0)

	// The generation takes 2.5 s, each try 1 s: a retry gets the image.
	res := sdkRun(t, node, dir, "images", base, key, "SLOW red fox", "1000")
	require.Equal(t, true, res["ok"], "%v", res)
	assert.Equal(t, 1.0, res["images"])
	retries, idem := log.take()
	t.Logf("tries: X-Stainless-Retry-Count %v, Idempotency-Key %q", retries, idem)
	require.GreaterOrEqual(t, len(retries), 2, "the first try timed out")
	assert.Equal(t, "0", retries[0])
	assert.Equal(t, "1", retries[1])
	ids, states := tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 1, "one task for one SDK call")
	assert.Equal(t, []string{stateSucceeded}, states)
	assert.Equal(t, int64(85), e.key(info.ID).Credits, "charged once")

	// Never finishes: three tries time out, one task, cancelled, unbilled.
	res = sdkRun(t, node, dir, "images", base, key, "BLOCK blue heron", "500")
	require.Equal(t, false, res["ok"], "%v", res)
	assert.Equal(t, "APIConnectionTimeoutError", res["error"])
	retries, _ = log.take()
	assert.Equal(t, []string{"0", "1", "2"}, retries, "the SDK's default: two retries")
	ids, _ = tasksOf(t, e.srv.db.q, info.ID)
	require.Len(t, ids, 2, "one more task")
	require.Eventually(t, func() bool {
		tk, err := getTask(context.Background(), e.srv.db.q, ids[1])
		return err == nil && tk.State == stateCancelled
	}, 15*time.Second, 50*time.Millisecond)
	k := e.key(info.ID)
	assert.Equal(t, int64(85), k.Credits, "nothing more charged")
	assert.Equal(t, int64(0), k.Reserved)

	res = sdkRun(t, node, dir, "models", base, key)
	require.Equal(t, true, res["ok"], "%v", res)
	assert.Equal(t, []any{DefaultModelID}, res["ids"])
	assert.Equal(t, DefaultModelID, res["retrieved"])
	assert.Equal(t, "model", res["object"])
	assert.True(t, strings.TrimSpace(res["owned_by"].(string)) != "")
}
