package kernels

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifestMatchesSources fails when a kernel source or the build script
// changed since kernels.fatbin was generated.
func TestManifestMatchesSources(t *testing.T) {
	man, err := os.ReadFile("kernels.manifest")
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]string{}
	for _, line := range strings.Split(string(man), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "sha256" {
			recorded[f[1]] = f[2]
		}
		if len(f) == 3 && f[0] == "fatbin" {
			sum := sha256.Sum256([]byte(fatbin))
			if hex.EncodeToString(sum[:]) != f[1] {
				t.Errorf("kernels.fatbin does not match kernels.manifest: run `go generate ./cuda/...`")
			}
		}
	}
	sources, _ := filepath.Glob("*.cu")
	headers, _ := filepath.Glob("*.cuh")
	files := append(sources, headers...)
	files = append(files, "scripts/build-kernels.sh")
	for _, f := range files {
		path := f
		if strings.HasPrefix(f, "scripts/") {
			path = filepath.Join("..", "..", f)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		want, ok := recorded[f]
		switch {
		case !ok:
			t.Errorf("%s is not in kernels.manifest: run `go generate ./cuda/...`", f)
		case want != hex.EncodeToString(sum[:]):
			t.Errorf("%s changed since the kernels were generated: run `go generate ./cuda/...`", f)
		}
		delete(recorded, f)
	}
	for f := range recorded {
		t.Errorf("kernels.manifest lists %s, which no longer exists: run `go generate ./cuda/...`", f)
	}
}

// TestRebuildIsIdentical rebuilds with nvcc and byte-compares every
// generated file (KERNELS_REBUILD_CHECK=1; needs the CUDA toolkit).
func TestRebuildIsIdentical(t *testing.T) {
	if os.Getenv("KERNELS_REBUILD_CHECK") != "1" {
		t.Skip("set KERNELS_REBUILD_CHECK=1 to rebuild the fatbin and compare")
	}
	if _, err := exec.LookPath("nvcc"); err != nil {
		t.Skip("nvcc not installed")
	}
	dir := t.TempDir()
	out, err := exec.Command("../../scripts/build-kernels.sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("build-kernels.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"kernels.fatbin", "kernels.sigs", "kernels.manifest", "kernels.resources.txt"} {
		a, _ := os.ReadFile(f)
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from a fresh build: run `go generate ./cuda/...` with the pinned toolchain", f)
		}
	}
}

func TestFatbinShape(t *testing.T) {
	b := Fatbin()
	if len(b) < 16 || !bytes.Equal(b[:4], []byte{0x50, 0xed, 0x55, 0xba}) {
		t.Fatalf("fatbin magic %x", b[:4])
	}
	sigs := Signatures()
	if len(sigs) < 40 {
		t.Fatalf("only %d kernels", len(sigs))
	}
	for name, k := range sigs {
		if strings.Contains(k, "?") {
			t.Errorf("%s has a parameter of unsupported type: %s", name, k)
		}
	}
	res, err := os.ReadFile("kernels.resources.txt")
	if err != nil {
		t.Fatal(err)
	}
	hmma, ldgsts := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(res)), "\n") {
		if strings.Contains(line, "HMMA.16816.F32.BF16:") {
			hmma++
			continue
		}
		if strings.Contains(line, " LDGSTS:") {
			ldgsts++
			continue
		}
		if !strings.Contains(line, "STACK:0 ") || !strings.Contains(line, "LOCAL:0 ") {
			t.Errorf("kernel uses stack or local memory: %s", line)
		}
	}
	tc := 0
	for name := range sigs {
		if strings.HasPrefix(name, "zk_tc_") {
			tc++
		}
	}
	if hmma != 4*tc || ldgsts != 4*tc {
		t.Errorf("%d tensor-core kernels but %d HMMA and %d LDGSTS SASS checks (want one each per arch)", tc, hmma, ldgsts)
	}
}
