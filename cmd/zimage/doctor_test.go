package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestDoctorJSON runs doctor on the tiny model (tiny shapes for the timed
// run, so it stays fast): every section is there; without a GPU it says so
// and checks the CPU path.
func TestDoctorJSON(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"doctor", "--json", "--config", "tiny", "--model", model}, &out, &errb)
	var r struct {
		Go          string
		CPUs        int
		CPUFeatures []string `json:"cpu_features"`
		CUDA        struct {
			Driver string
			Usable bool
			Reason string
		}
		Plans []struct {
			Size, Plan, Err string
		}
		Model struct {
			Check []string
			Err   string
		}
		Timed struct {
			Device string
			Step   int64 `json:"step_ns"`
			Note   string
			Err    string
		}
		Problems []string
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errb.String())
	}
	if code != 0 || len(r.Problems) != 0 {
		t.Errorf("exit %d, problems %v", code, r.Problems)
	}
	if r.Go == "" || r.CPUs == 0 || r.CUDA.Driver == "" {
		t.Errorf("system section: %+v", r)
	}
	if len(r.Plans) != 2 || r.Plans[0].Size != "512x512" || r.Plans[1].Plan == "" {
		t.Errorf("plans %+v", r.Plans)
	}
	if !strings.Contains(strings.Join(r.Model.Check, "\n"), "check       ok") || r.Model.Err != "" {
		t.Errorf("model check %q %s", r.Model.Check, r.Model.Err)
	}
	if r.Timed.Err != "" || r.Timed.Step <= 0 {
		t.Errorf("timed run %+v", r.Timed)
	}
	if !r.CUDA.Usable {
		if !strings.Contains(r.CUDA.Reason, "checking the CPU path") || r.Timed.Device != "cpu" || !strings.Contains(r.Timed.Note, "extrapolated") {
			t.Errorf("no-GPU report: %+v %+v", r.CUDA, r.Timed)
		}
	}
}

func TestDoctorTextAndProblems(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"doctor", "--run=false", "--model", t.TempDir()}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "problems:") || !strings.Contains(out.String(), "model:") {
		t.Errorf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "system ") || !strings.Contains(out.String(), "plan 1024x1024") {
		t.Errorf("text report:\n%s", out.String())
	}
	if code := run(context.Background(), []string{"doctor", "--selftest", "sometimes"}, &out, &errb); code != 2 {
		t.Errorf("bad --selftest: exit %d", code)
	}
}
