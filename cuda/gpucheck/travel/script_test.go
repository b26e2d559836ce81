package travel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestGPUTravelScript runs scripts/gpu-travel.sh on a scratch clone of this
// repository (with the working tree's script and list committed on top):
// with a 15 MB fake test binary the tree is over the cap, slim brings it
// under, both commands are idempotent, and restore leaves git status clean.
func TestGPUTravelScript(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository")
	}
	for _, tool := range []string{"git", "bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	src := filepath.Dir(fixturefs.Root())
	if _, err := os.Stat(filepath.Join(src, ".git")); err != nil {
		t.Skip("not a git checkout")
	}
	dir := filepath.Join(t.TempDir(), "clone")
	run := func(wantOK bool, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("%s %s: err %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cmd := exec.Command("git", "clone", "-q", src, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	// The working tree's script and list, in case they are not committed yet.
	for _, f := range []string{"scripts/gpu-travel.sh", "cuda/gpucheck/travel/travel.go", "cuda/gpucheck/travel/gpufixtures/main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(true, "git", "add", "-A")
	if strings.TrimSpace(run(true, "git", "status", "--porcelain")) != "" {
		run(true, "git", "commit", "-q", "-m", "working tree")
	}
	// The prebuilt test binary is about 15 MB.
	if err := os.MkdirAll(filepath.Join(dir, ".gpucheck"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".gpucheck", "gpucheck.test"), make([]byte, 15<<20), 0o755); err != nil {
		t.Fatal(err)
	}
	before := run(true, "git", "ls-files")
	if out := run(false, "bash", "scripts/gpu-travel.sh", "size"); !strings.Contains(out, "FAIL") {
		t.Fatalf("size over the cap without a FAIL line:\n%s", out)
	}
	t.Log(run(true, "bash", "scripts/gpu-travel.sh", "slim"))
	if out := run(true, "bash", "scripts/gpu-travel.sh", "slim"); !strings.Contains(out, "already slim") {
		t.Errorf("second slim: %s", out)
	}
	out := run(true, "bash", "scripts/gpu-travel.sh", "size")
	t.Log(out)
	if !strings.Contains(out, "OK") {
		t.Errorf("slim tree does not fit:\n%s", out)
	}
	// Nothing left the disk, and nothing unneeded is left to travel.
	for _, f := range strings.Fields(before) {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("slim removed %s from disk", f)
		}
	}
	for _, f := range strings.Fields(run(true, "git", "ls-files", "--cached", "--others", "--exclude-standard", "testdata")) {
		if !Needed(strings.TrimPrefix(f, "testdata/")) {
			t.Errorf("%s still travels", f)
		}
	}
	if s := run(true, "git", "status", "--porcelain"); !strings.Contains(s, "D  testdata/") || strings.Contains(s, "??") {
		t.Errorf("slim: want staged removals and nothing untracked:\n%s", s)
	}
	run(true, "bash", "scripts/gpu-travel.sh", "restore")
	if out := run(true, "bash", "scripts/gpu-travel.sh", "restore"); !strings.Contains(out, "nothing to restore") {
		t.Errorf("second restore: %s", out)
	}
	if s := run(true, "git", "status", "--porcelain"); s != "" {
		t.Errorf("git status after restore:\n%s", s)
	}
	if after := run(true, "git", "ls-files"); after != before {
		t.Error("restore did not bring back the same index")
	}
	if _, err := os.Stat(filepath.Join(dir, "testdata", ".gitignore")); err == nil {
		t.Error("restore left testdata/.gitignore")
	}
}
