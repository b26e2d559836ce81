package server

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMethodNotAllowedAllow: every 405 names the allowed methods in Allow.
func TestMethodNotAllowedAllow(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.addKey(100, 0)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/api/generate", "POST"},
		{"PUT", "/v1/images/generations", "POST"},
		{"POST", "/api/status?task_id=x", "GET, HEAD"},
		{"DELETE", "/api/images/task_x/0.png", "GET, HEAD"},
		{"POST", "/v1/models", "GET, HEAD"},
	} {
		r := do(t, tc.method, e.url+tc.path, key, nil)
		assert.Equal(t, 405, r.Status, "%s %s", tc.method, tc.path)
		assert.Equal(t, tc.allow, r.Header.Get("Allow"), "%s %s", tc.method, tc.path)
	}
}

// TestForwardedHeaders: X-Forwarded-Proto and -Host build the image links
// only when the peer is a trusted proxy.
func TestForwardedHeaders(t *testing.T) {
	linkOf := func(e *testEnv, key string) string {
		req, err := http.NewRequest("POST", e.url+"/v1/images/generations", strings.NewReader(`{"prompt":"x"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-Proto", "https, http")
		req.Header.Set("X-Forwarded-Host", "img.example.com, inner:8080")
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var out struct {
			Data []struct{ URL string } `json:"data"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Len(t, out.Data, 1)
		return out.Data[0].URL
	}

	e := newEnv(t, nil)
	key, _ := e.addKey(100, 0)
	assert.True(t, strings.HasPrefix(linkOf(e, key), e.url+"/api/images/"), "untrusted peer: headers ignored")

	lo, err := ParseTrustedProxy("127.0.0.0/8")
	require.NoError(t, err)
	e = newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{lo} })
	key, _ = e.addKey(100, 0)
	link := linkOf(e, key)
	assert.True(t, strings.HasPrefix(link, "https://img.example.com/api/images/"), link)
	r := do(t, "GET", strings.Replace(link, "https://img.example.com", e.url, 1), "", nil)
	assert.Equal(t, 200, r.Status, "the link works through the proxy's host")

	other, err := ParseTrustedProxy("10.1.2.3")
	require.NoError(t, err)
	assert.Equal(t, "10.1.2.3/32", other.String())
	e = newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{other} })
	key, _ = e.addKey(100, 0)
	assert.True(t, strings.HasPrefix(linkOf(e, key), e.url+"/"), "a peer outside the trusted list")

	_, err = ParseTrustedProxy("nope")
	assert.Error(t, err)
}

// TestModels: GET /v1/models lists the model in OpenAI's shape, and
// GET /v1/models/{id} returns it (404 for other ids).
func TestModels(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.addKey(100, 0)
	r := do(t, "GET", e.url+"/v1/models", key, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &list))
	assert.Equal(t, "list", list.Object)
	require.Len(t, list.Data, 1)
	m := list.Data[0]
	assert.Equal(t, DefaultModelID, m.ID)
	assert.Equal(t, "model", m.Object)
	assert.Positive(t, m.Created)
	assert.NotEmpty(t, m.OwnedBy)

	r = do(t, "GET", e.url+"/v1/models/"+DefaultModelID, key, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.JSONEq(t, string(mustJSON(t, m)), strings.TrimSpace(string(r.Body)))
	r = do(t, "GET", e.url+"/v1/models/dall-e-3", key, nil)
	assert.Equal(t, 404, r.Status)
	assert.Contains(t, string(r.Body), `"error"`)
	assert.Equal(t, 401, do(t, "GET", e.url+"/v1/models", "", nil).Status)
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
