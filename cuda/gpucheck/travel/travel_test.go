package travel

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// gpuSources parses the gpu-tagged tests of cuda/gpucheck.
func gpuSources(t *testing.T) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("..", "*_test.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no gpucheck tests found: %v", err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, n := range names {
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// TestPatternsCoverGPUTests checks Patterns against what the GPU tests read:
// every "fixtures/..." literal in their sources, every file named by the
// case lists they use, and the case lists themselves.
func TestPatternsCoverGPUTests(t *testing.T) {
	// The case helpers whose files are checked below; a new one must be
	// added here (and its files to Patterns).
	known := map[string]bool{"E2ECases": true, "EditCases": true, "LoRACases": true, "ControlCases": true}
	helper := regexp.MustCompile(`^[A-Z][A-Za-z]*Cases$`)
	covered := func(lit string) bool {
		if Needed(lit) {
			return true
		}
		dir := strings.TrimSuffix(lit, "/") + "/"
		for _, p := range Patterns {
			if strings.HasPrefix(p, dir) {
				return true
			}
		}
		return false
	}
	for _, f := range gpuSources(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && strings.HasPrefix(s, "fixtures/") && !covered(s) {
					t.Errorf("gpucheck reads %q: not in travel.Patterns", s)
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "fixturefs" && helper.MatchString(n.Sel.Name) && !known[n.Sel.Name] {
					t.Errorf("gpucheck uses fixturefs.%s: add its files to travel.Patterns and to this test", n.Sel.Name)
				}
			}
			return true
		})
	}

	need := func(rels ...string) {
		for _, r := range rels {
			if r != "" && !Needed(r) {
				t.Errorf("the GPU tests read %s: not in travel.Patterns", r)
			}
		}
	}
	need("fixtures/e2e/e2e.json", "fixtures/e2e_img2img/e2e_img2img.json", "fixtures/e2e_inpaint/e2e_inpaint.json",
		"fixtures/e2e_lora/e2e_lora.json", "fixtures/e2e_controlnet/e2e_controlnet.json")
	for _, c := range fixturefs.E2ECases(t) {
		need("fixtures/e2e/" + c.Name + ".png")
	}
	for _, c := range fixturefs.EditCases(t) {
		d := "fixtures/" + c.Dir + "/"
		need(d+c.Name+".png", d+c.InitPNG, opt(d, c.MaskPNG))
	}
	for _, c := range fixturefs.LoRACases(t) {
		need("fixtures/e2e_lora/" + c.Name + ".png")
		for _, l := range c.LoRAs {
			need("fixtures/e2e_lora/" + l.File)
		}
	}
	for _, c := range fixturefs.ControlCases(t) {
		d := "fixtures/e2e_controlnet/"
		need(d+c.Name+".png", d+c.ControlPNG, opt(d, c.InitPNG), opt(d, c.MaskPNG))
	}

	// Every pattern names something that exists.
	root := fixturefs.Root()
	var all []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		all = append(all, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Patterns {
		saved := Patterns
		Patterns = []string{p}
		n := 0
		for _, f := range all {
			if Needed(f) {
				n++
			}
		}
		Patterns = saved
		if n == 0 {
			t.Errorf("travel.Patterns entry %q matches no file under testdata/", p)
		}
	}
}

func opt(dir, name string) string {
	if name == "" {
		return ""
	}
	return dir + name
}

func TestNeeded(t *testing.T) {
	for rel, want := range map[string]bool{
		"fixtures/tiny-z-image-turbo/vae/diffusion_pytorch_model.safetensors.zst": true,
		"fixtures/e2e/e2e.json":                           true,
		"fixtures/e2e/en_64x64_seed42.png":                true,
		"fixtures/e2e/en_64x64_seed42.safetensors.zst":    false,
		"fixtures/e2e_lora/lora_kohya.safetensors":        true,
		"fixtures/e2e_lora/lora_kohya.safetensors.zst":    true,
		"fixtures/e2e_controlnet/modes/controlnet/x.json": false,
		"fixtures/e2e_controlnet/controlnet/config.json":  true,
		"tokenizer/qwen3/vocab.json.zst":                  false,
		"fixtures/dit.safetensors.zst":                    false,
	} {
		if got := Needed(rel); got != want {
			t.Errorf("Needed(%q) = %v, want %v", rel, got, want)
		}
	}
}
