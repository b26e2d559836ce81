package hub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/weights/hub/hubtest"
)

const testRepo = "Tongyi-MAI/Z-Image-Turbo"

// extras are repository files the pipeline does not need.
var extras = map[string][]byte{
	"README.md":                                            []byte("# tiny\n"),
	"assets/banner.png":                                    bytes.Repeat([]byte{7}, 3000),
	"text_encoder/generation_config.json":                  []byte(`{"do_sample": true}`),
	"vae/diffusion_pytorch_model.bin":                      bytes.Repeat([]byte{1}, 100),
	"transformer/diffusion_pytorch_model.fp16.safetensors": []byte("not needed"),
}

// newFake serves the tiny fixture model (plus extras) as testRepo.
func newFake(t *testing.T) *hubtest.Server {
	return hubtest.New(t, testRepo, fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), extras)
}

// newClient returns a client on an empty cache talking to fake.
func newClient(t *testing.T, fake *hubtest.Server) *Client {
	return &Client{Endpoint: fake.Endpoint(), CacheDir: t.TempDir(), Backoff: time.Millisecond, Parallel: 3}
}

// wantPipelineFiles are the files PipelineAll() must fetch.
func wantPipelineFiles(fake *hubtest.Server) []string {
	var out []string
	for _, f := range fake.Files() {
		if _, extra := extras[f]; !extra {
			out = append(out, f)
		}
	}
	return out
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		ok   bool
	}{
		{"Tongyi-MAI/Z-Image-Turbo", Ref{"Tongyi-MAI/Z-Image-Turbo", ""}, true},
		{"Tongyi-MAI/Z-Image-Turbo@main", Ref{"Tongyi-MAI/Z-Image-Turbo", "main"}, true},
		{"hf://a/b@refs/pr/3", Ref{"a/b", "refs/pr/3"}, true},
		{"org/name.v1_2@0123456789abcdef0123456789abcdef01234567", Ref{"org/name.v1_2", "0123456789abcdef0123456789abcdef01234567"}, true},
		{"justname", Ref{}, false},
		{"a/b/c", Ref{}, false},
		{"/abs/path", Ref{}, false},
		{"./rel/x", Ref{}, false},
		{"../x/y", Ref{}, false},
		{"a/b@", Ref{}, false},
		{"a/-b", Ref{}, false},
		{"a--x/b", Ref{}, false},
		{"a/b@../x", Ref{}, false},
	} {
		got, err := ParseRef(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFromEnv(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HUGGINGFACE_HUB_CACHE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_ENDPOINT", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	c := FromEnv()
	if c.CacheDir != filepath.Join(home, "hub") || c.Endpoint != DefaultEndpoint || c.Token != "" || c.Offline {
		t.Errorf("defaults: %+v", c)
	}
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("hf_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := FromEnv(); c.Token != "hf_file" {
		t.Errorf("token from $HF_HOME/token: %q", c.Token)
	}
	other := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(other, []byte("hf_path"), 0o600)
	t.Setenv("HF_TOKEN_PATH", other)
	if c := FromEnv(); c.Token != "hf_path" {
		t.Errorf("token from HF_TOKEN_PATH: %q", c.Token)
	}
	t.Setenv("HF_TOKEN", "hf_env")
	t.Setenv("HF_HUB_CACHE", "/x/cache")
	t.Setenv("HF_ENDPOINT", "https://mirror.example/")
	t.Setenv("HF_HUB_OFFLINE", "1")
	c = FromEnv()
	if c.Token != "hf_env" || c.CacheDir != "/x/cache" || c.Endpoint != "https://mirror.example" || !c.Offline {
		t.Errorf("overrides: %+v", c)
	}
	t.Setenv("HF_HOME", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if h := HFHome(); h != "/xdg/huggingface" {
		t.Errorf("HFHome with XDG_CACHE_HOME = %q", h)
	}
}

// checkSnapshot verifies the cache layout huggingface_hub expects: refs/main
// holds the commit, every snapshot file is a relative symlink to
// blobs/<etag> with the right bytes, and no .incomplete file is left.
func checkSnapshot(t *testing.T, c *Client, fake *hubtest.Server, snap *Snapshot, files []string) {
	t.Helper()
	repoDir := c.RepoDir(testRepo)
	if filepath.Base(repoDir) != "models--Tongyi-MAI--Z-Image-Turbo" {
		t.Errorf("repo dir %s", repoDir)
	}
	ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main"))
	if err != nil || string(ref) != fake.Commit {
		t.Errorf("refs/main = %q, %v; want %s", ref, err, fake.Commit)
	}
	if snap.Commit != fake.Commit || snap.Dir != filepath.Join(repoDir, "snapshots", fake.Commit) {
		t.Errorf("snapshot %+v", snap)
	}
	for _, f := range files {
		p := filepath.Join(snap.Dir, filepath.FromSlash(f))
		target, err := os.Readlink(p)
		if err != nil {
			t.Errorf("%s: not a symlink: %v", f, err)
			continue
		}
		depth := strings.Count(f, "/")
		want := strings.Repeat("../", depth+2) + "blobs/" + fake.ETag(f)
		if filepath.ToSlash(target) != want {
			t.Errorf("%s -> %s, want %s", f, target, want)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, fake.File(f)) {
			t.Errorf("%s: content differs (%v)", f, err)
		}
	}
	blobs, _ := os.ReadDir(filepath.Join(repoDir, "blobs"))
	for _, b := range blobs {
		if strings.HasSuffix(b.Name(), ".incomplete") {
			t.Errorf("left %s", b.Name())
		}
	}
}

func TestPullFresh(t *testing.T) {
	fake := newFake(t)
	fake.RequireToken("hf_secret")
	c := newClient(t, fake)
	c.Token = "hf_secret"
	var mu sync.Mutex
	var reports []Progress
	c.Progress = func(p Progress) { mu.Lock(); reports = append(reports, p); mu.Unlock() }
	snap, err := c.Pull(context.Background(), Ref{Repo: testRepo}, PipelineAll())
	if err != nil {
		t.Fatal(err)
	}
	want := wantPipelineFiles(fake)
	if strings.Join(snap.Files, ",") != strings.Join(want, ",") {
		t.Errorf("files\n got %v\nwant %v", snap.Files, want)
	}
	checkSnapshot(t, c, fake, snap, want)
	for f := range extras {
		if _, err := os.Lstat(filepath.Join(snap.Dir, f)); err == nil {
			t.Errorf("extra file %s downloaded", f)
		}
	}
	var total int64
	for _, f := range want {
		total += int64(len(fake.File(f)))
	}
	if snap.Downloaded != total {
		t.Errorf("downloaded %d bytes, want %d", snap.Downloaded, total)
	}
	// The token goes to the hub, never to the CDN.
	for _, r := range fake.Requests() {
		if r.Server == "hub" && r.Auth != "Bearer hf_secret" || r.Server == "cdn" && r.Auth != "" {
			t.Errorf("%s %s %s: Authorization %q", r.Server, r.Method, r.Path, r.Auth)
		}
	}
	if len(reports) == 0 || !reports[len(reports)-1].Finished {
		t.Fatalf("no final progress report (%d reports)", len(reports))
	}
	last := reports[len(reports)-1]
	if last.Done != last.Total || last.Total != total || last.FilesDone != last.Files {
		t.Errorf("final progress %+v, want %d bytes", last, total)
	}
	// The snapshot is a loadable model directory.
	if _, err := weights.OpenModel(snap.Dir); err != nil {
		t.Error(err)
	}
	m, _ := weights.OpenModel(snap.Dir)
	if s, err := m.OpenTransformer(); err != nil {
		t.Error(err)
	} else {
		s.Close()
	}
}

func TestSecondCallUsesCache(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	ctx := context.Background()
	if _, err := c.Resolve(ctx, Ref{Repo: testRepo}, PipelineAll()); err != nil {
		t.Fatal(err)
	}
	fake.ResetRequests()
	snap, err := c.Resolve(ctx, Ref{Repo: testRepo}, PipelineAll())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("Resolve on a complete cache made %d requests: %v", n, fake.Requests())
	}
	if snap.Commit != fake.Commit {
		t.Errorf("commit %s", snap.Commit)
	}
	// An explicit pull asks for the revision but transfers nothing.
	snap, err = c.Pull(ctx, Ref{Repo: testRepo, Revision: "main"}, PipelineAll())
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || !strings.HasPrefix(reqs[0].Path, "/api/models/") || snap.Downloaded != 0 {
		t.Errorf("second pull: %d bytes, requests %v", snap.Downloaded, reqs)
	}
	// By commit, offline too.
	c.Offline = true
	if _, err := c.Resolve(ctx, Ref{Repo: testRepo, Revision: fake.Commit}, PipelineAll()); err != nil {
		t.Error(err)
	}
}

func TestResumeAfterCutConnection(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	big := "text_encoder/model.safetensors"
	half := int64(len(fake.File(big)) / 2)
	fake.CutAfter(big, half)
	snap, err := c.Pull(context.Background(), Ref{Repo: testRepo}, PipelineAll())
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, c, fake, snap, wantPipelineFiles(fake))
	var gets []string
	for _, r := range fake.Requests() {
		if r.Server == "cdn" && strings.HasSuffix(r.Path, fake.ETag(big)) {
			gets = append(gets, r.Range)
		}
	}
	if len(gets) != 2 || gets[0] != "" || gets[1] != "bytes="+itoa(half)+"-" {
		t.Errorf("GETs of %s had ranges %q, want a full GET then bytes=%d-", big, gets, half)
	}
}

func TestResumeFromEarlierRun(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	big := "vae/diffusion_pytorch_model.safetensors"
	data := fake.File(big)
	blobs := filepath.Join(c.RepoDir(testRepo), "blobs")
	os.MkdirAll(blobs, 0o755)
	part := int64(len(data) / 3)
	if err := os.WriteFile(filepath.Join(blobs, fake.ETag(big)+".incomplete"), data[:part], 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Pull(context.Background(), Ref{Repo: testRepo}, PipelineAll())
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, c, fake, snap, wantPipelineFiles(fake))
	for _, r := range fake.Requests() {
		if r.Server == "cdn" && strings.HasSuffix(r.Path, fake.ETag(big)) && r.Range != "bytes="+itoa(part)+"-" {
			t.Errorf("resumed GET with Range %q, want bytes=%d-", r.Range, part)
		}
	}
}

func TestCorruptBlob(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	bad := "transformer/diffusion_pytorch_model-00002-of-00003.safetensors"
	fake.Corrupt(bad)
	_, err := c.Pull(context.Background(), Ref{Repo: testRepo}, PipelineAll())
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.File != bad || ce.Want != fake.ETag(bad) || ce.Algo != "sha256" {
		t.Fatalf("err = %v, want a ChecksumError for %s", err, bad)
	}
	blob := filepath.Join(c.RepoDir(testRepo), "blobs", fake.ETag(bad))
	for _, p := range []string{blob, blob + ".incomplete", filepath.Join(c.SnapshotDir(testRepo, fake.Commit), bad)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a corrupt download", p)
		}
	}
	if _, err := os.Stat(filepath.Join(c.RepoDir(testRepo), "refs", "main")); err == nil {
		t.Error("refs/main written for an incomplete pull")
	}
}

func TestOffline(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	c.Offline = true
	ctx := context.Background()
	for _, call := range []func() (*Snapshot, error){
		func() (*Snapshot, error) { return c.Resolve(ctx, Ref{Repo: testRepo}, PipelineAll()) },
		func() (*Snapshot, error) { return c.Pull(ctx, Ref{Repo: testRepo}, PipelineAll()) },
	} {
		_, err := call()
		var nc *NotCachedError
		if !errors.As(err, &nc) || !errors.Is(err, ErrOffline) {
			t.Errorf("offline on an empty cache: %v", err)
		}
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("offline client made %d requests", n)
	}
	c.Offline = false
	if _, err := c.Pull(ctx, Ref{Repo: testRepo}, PipelineAll()); err != nil {
		t.Fatal(err)
	}
	fake.ResetRequests()
	c.Offline = true
	if _, err := c.Pull(ctx, Ref{Repo: testRepo}, PipelineAll()); err != nil {
		t.Error(err)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("offline client made %d requests", n)
	}
	// A snapshot with a missing blob is not complete.
	os.Remove(filepath.Join(c.RepoDir(testRepo), "blobs", fake.ETag("vae/config.json")))
	_, err := c.Resolve(ctx, Ref{Repo: testRepo}, PipelineAll())
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "vae/config.json") {
		t.Errorf("dangling pointer: %v", err)
	}
}

// TestDiffusersCache builds by hand the cache huggingface_hub writes
// (blobs named by etag, relative symlinks, refs/main) and finds it without
// any network.
func TestDiffusersCache(t *testing.T) {
	src := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cache := t.TempDir()
	commit := "0123456789abcdef0123456789abcdef01234567"
	repoDir := filepath.Join(cache, "models--Tongyi-MAI--Z-Image-Turbo")
	snap := filepath.Join(repoDir, "snapshots", commit)
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		etag := hubtest.GitBlobSHA1(data) // any unique name will do
		os.MkdirAll(filepath.Join(repoDir, "blobs"), 0o755)
		if err := os.WriteFile(filepath.Join(repoDir, "blobs", etag), data, 0o644); err != nil {
			return err
		}
		link := filepath.Join(snap, rel)
		os.MkdirAll(filepath.Dir(link), 0o755)
		target, _ := filepath.Rel(filepath.Dir(link), filepath.Join(repoDir, "blobs", etag))
		return os.Symlink(target, link)
	})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(repoDir, "refs"), 0o755)
	os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte(commit), 0o644)

	c := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: cache} // nothing listens there
	s, err := c.Resolve(context.Background(), Ref{Repo: testRepo}, PipelineAll())
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != snap || s.Commit != commit {
		t.Errorf("snapshot %+v", s)
	}
	if _, err := weights.OpenModel(s.Dir); err != nil {
		t.Error(err)
	}
}

func TestRetryAndErrors(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	ctx := context.Background()
	fake.FailNext(2) // two 503s, then fine
	if _, err := c.Pull(ctx, Ref{Repo: testRepo}, Pipeline()); err != nil {
		t.Fatalf("after transient 503s: %v", err)
	}
	// Small-files selection: no weights fetched.
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, ".safetensors") {
			t.Errorf("Pipeline() fetched %s", r.Path)
		}
	}
	// One component's weights only.
	fake.ResetRequests()
	snap, err := c.Pull(ctx, Ref{Repo: testRepo}, Pipeline("vae"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, ".safetensors") && !strings.Contains(r.Path, "vae") && r.Server == "hub" {
			t.Errorf("Pipeline(vae) fetched %s", r.Path)
		}
	}
	if len(snap.Files) == 0 || !fileExists(filepath.Join(snap.Dir, "vae", "diffusion_pytorch_model.safetensors")) {
		t.Errorf("vae weights not fetched: %v", snap.Files)
	}
	if _, err := c.Cached(Ref{Repo: testRepo}, PipelineAll()); err == nil {
		t.Error("a vae-only snapshot passes as complete")
	}
	if _, err := c.Pull(ctx, Ref{Repo: testRepo}, Pipeline("unet")); err == nil || !strings.Contains(err.Error(), "unknown pipeline component") {
		t.Errorf("unknown component: %v", err)
	}

	fake.FailNext(100)
	c2 := newClient(t, fake)
	c2.Retries = 3
	_, err = c2.Pull(ctx, Ref{Repo: testRepo}, Pipeline())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 503 || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("persistent 503: %v", err)
	}
	fake.FailNext(0)

	fake.RequireToken("right")
	c3 := newClient(t, fake)
	c3.Token = "wrong"
	_, err = c3.Pull(ctx, Ref{Repo: testRepo}, Pipeline())
	if !errors.As(err, &he) || he.Status != 401 || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("bad token: %v", err)
	}
	fake.RequireToken("")
	_, err = c3.Pull(ctx, Ref{Repo: testRepo, Revision: "nope"}, Pipeline())
	if !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("unknown revision: %v", err)
	}
	// Nothing listening: a clear network error after the retries.
	c4 := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir(), Backoff: time.Millisecond, Retries: 2}
	_, err = c4.Pull(ctx, Ref{Repo: testRepo}, Pipeline())
	if err == nil || !strings.Contains(err.Error(), "giving up after 2 attempts") {
		t.Errorf("unreachable hub: %v", err)
	}
}

func TestDiskFull(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	saved := freeSpaceFn
	freeSpaceFn = func(string) int64 { return 1 << 20 }
	defer func() { freeSpaceFn = saved }()
	_, err := c.Pull(context.Background(), Ref{Repo: testRepo}, PipelineAll())
	var de *DiskFullError
	if !errors.As(err, &de) || de.Free != 1<<20 || de.Need <= 0 || !strings.Contains(err.Error(), "HF_HUB_CACHE") {
		t.Fatalf("err = %v, want a DiskFullError", err)
	}
	// ENOSPC while writing is reported the same way.
	err = c.localErr(&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, "/d")
	if !errors.As(err, &de) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("ENOSPC: %v", err)
	}
}

func TestCancel(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	c.Progress = func(p Progress) {
		if p.Done > 0 {
			cancel()
		}
	}
	c.ProgressEvery = time.Nanosecond
	_, err := c.Pull(ctx, Ref{Repo: testRepo}, PipelineAll())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCachePath(t *testing.T) {
	c := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		in           string
		repo, commit string
		ok           bool
	}{
		{"/c/hub/models--Tongyi-MAI--Z-Image-Turbo", "Tongyi-MAI/Z-Image-Turbo", "", true},
		{"/c/hub/models--Tongyi-MAI--Z-Image-Turbo/snapshots/" + c, "Tongyi-MAI/Z-Image-Turbo", c, true},
		{"/c/hub/models--Tongyi-MAI--Z-Image-Turbo/snapshots/" + c + "/", "Tongyi-MAI/Z-Image-Turbo", c, true},
		{"/c/hub/datasets--a--b", "", "", false},
		{"/c/hub/models--a", "", "", false},
		{"/models/Z-Image-Turbo", "", "", false},
	} {
		repo, commit, ok := CachePath(tc.in)
		if repo != tc.repo || commit != tc.commit || ok != tc.ok {
			t.Errorf("CachePath(%q) = %q, %q, %v", tc.in, repo, commit, ok)
		}
	}
}

func TestRepoSnapshot(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake)
	snap, err := c.Pull(context.Background(), Ref{Repo: testRepo}, Pipeline())
	if err != nil {
		t.Fatal(err)
	}
	got, err := RepoSnapshot(c.RepoDir(testRepo), "")
	if err != nil || got != snap.Dir {
		t.Errorf("RepoSnapshot = %q, %v; want %s", got, err, snap.Dir)
	}
	if _, err := RepoSnapshot(c.RepoDir(testRepo), "dev"); err == nil {
		t.Error("missing ref accepted")
	}
}
