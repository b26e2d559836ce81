package server

import (
	"context"
	"encoding/json"
	"image"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// loraGen records the adapters each job asked for.
type loraGen struct {
	Generator
	mu   sync.Mutex
	seen map[string][]LoRA // task → job LoRAs
}

func (g *loraGen) Generate(ctx context.Context, job Job) (image.Image, int64, error) {
	g.mu.Lock()
	g.seen[job.TaskID] = job.LoRAs
	g.mu.Unlock()
	return g.Generator.Generate(ctx, job)
}

func TestLoRARequests(t *testing.T) {
	var lg *loraGen
	e := newEnv(t, func(c *Config) {
		lg = &loraGen{Generator: c.Generator, seen: map[string][]LoRA{}}
		c.Generator = lg
		c.LoRAs = map[string]float32{"anime": 0.8, "film": 1}
	})
	key, _ := e.addKey(1000, 0)

	r := do(t, "GET", e.url+"/api/loras", "", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.JSONEq(t, `{"loras":[{"name":"anime","default_scale":0.8},{"name":"film","default_scale":1}],"max_per_request":4}`, string(r.Body))

	r = e.generate(key, map[string]any{"prompt": "a fox", "aspect_ratio": "1:1",
		"loras": []map[string]any{{"name": "anime"}, {"name": "film", "scale": 0.5}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var d struct {
		TaskID string `json:"task_id"`
	}
	r.data(&d)
	require.Equal(t, "SUCCESS", e.waitDone(key, d.TaskID).Status)
	lg.mu.Lock()
	require.Equal(t, []LoRA{{"anime", 0.8}, {"film", 0.5}}, lg.seen[d.TaskID])
	lg.mu.Unlock()

	// GET /api/status echoes them, as applied; a task without has none.
	var st struct {
		Request map[string]json.RawMessage `json:"request"`
	}
	r = do(t, "GET", e.url+"/api/status?task_id="+d.TaskID, key, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.data(&st)
	require.JSONEq(t, `[{"name":"anime","scale":0.8},{"name":"film","scale":0.5}]`, string(st.Request["loras"]))
	st.Request = nil
	r = do(t, "GET", e.url+"/api/status?task_id="+e.submitOK(key, "a fox"), key, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.data(&st)
	require.NotContains(t, st.Request, "loras")
	require.Contains(t, st.Request, "prompt")

	// OpenAI body.
	r = do(t, "POST", e.url+"/v1/images/generations", key, map[string]any{"prompt": "a fox", "size": "64x64",
		"loras": []map[string]any{{"name": "film", "scale": -1}}})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	lg.mu.Lock()
	found := false
	for _, ls := range lg.seen {
		found = found || len(ls) == 1 && ls[0] == LoRA{"film", -1}
	}
	lg.mu.Unlock()
	require.True(t, found, "OpenAI request's LoRA not passed to the generator")

	// Bad selections are 400s; unknown names list the available ones.
	for body, want := range map[string]string{
		`{"prompt":"x","aspect_ratio":"1:1","loras":[{"name":"/etc/passwd"}]}`:                                                             "(available: anime, film)",
		`{"prompt":"x","aspect_ratio":"1:1","loras":[{"scale":1}]}`:                                                                        "needs a",
		`{"prompt":"x","aspect_ratio":"1:1","loras":"anime"}`:                                                                              "must be an array",
		`{"prompt":"x","aspect_ratio":"1:1","loras":[{"name":"anime","scale":1e9}]}`:                                                       "scale",
		`{"prompt":"x","aspect_ratio":"1:1","loras":[{"name":"anime"},{"name":"anime"},{"name":"film"},{"name":"film"},{"name":"anime"}]}`: "limit is 4",
	} {
		r := e.generate(key, json.RawMessage(body))
		require.Equal(t, 400, r.Status, "%s → %s", body, r.Body)
		require.True(t, strings.Contains(string(r.Body), want), "%s → %s", body, r.Body)
	}
}

func TestLoRAsNoneRegistered(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.addKey(1000, 0)
	r := e.generate(key, json.RawMessage(`{"prompt":"x","aspect_ratio":"1:1","loras":[{"name":"a"}]}`))
	require.Equal(t, 400, r.Status)
	require.Contains(t, string(r.Body), "none are loaded")
	// Without the field nothing changes.
	e.waitDone(key, e.submitOK(key, "a fox"))
}

// FuzzDecodeLoRAs: any body gives adapters that are registered, at most
// MaxLoRAs, with finite bounded scales, or a 400; never a panic.
func FuzzDecodeLoRAs(f *testing.F) {
	f.Add(`{"loras":[{"name":"anime","scale":0.5}]}`)
	f.Add(`{"loras":[{"name":"film"},{"name":"anime","scale":-2}]}`)
	f.Add(`{"loras":null}`)
	f.Add(`{"loras":[{"name":7}]}`)
	f.Add(`{"loras":{"name":"anime"}}`)
	s := &Server{cfg: Config{LoRAs: map[string]float32{"anime": 0.8, "film": 1}}}
	f.Fuzz(func(t *testing.T, body string) {
		ls, ae := s.decodeLoRAs([]byte(body))
		if ae != nil {
			if ae.status != 400 {
				t.Fatalf("status %d", ae.status)
			}
			return
		}
		if len(ls) > MaxLoRAs {
			t.Fatalf("%d adapters", len(ls))
		}
		for _, l := range ls {
			if _, ok := s.cfg.LoRAs[l.Name]; !ok || l.Scale != l.Scale || l.Scale > 100 || l.Scale < -100 {
				t.Fatalf("bad adapter %+v", l)
			}
		}
		if got := parseLoRAColumn(loraColumn(ls)); len(got) != len(ls) {
			t.Fatalf("column round trip %v → %v", ls, got)
		}
	})
}
