package zimage

import (
	"context"
	"slices"
	"testing"

	"github.com/zimage/zimage/zimage/internal/fixture"
)

// runStages runs req on p (its Progress replaced) and checks that the
// progress went through the stages want, in order.
func runStages(t *testing.T, p *Pipeline, req Request, want ...string) *Result {
	t.Helper()
	var stages []string
	req.Progress = func(pr Progress) {
		if len(stages) == 0 || stages[len(stages)-1] != pr.Stage {
			stages = append(stages, pr.Stage)
		}
	}
	res, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stages, want) {
		t.Errorf("progress stages %v, want %v", stages, want)
	}
	return res
}

// checkReferencePNG compares res's image with the fixture PNG rel by the
// end-to-end criterion: ≥ 99.9% of the values within ±1, none off by more
// than 4. what names the comparison in the failure.
func checkReferencePNG(t *testing.T, what string, res *Result, rel string) {
	t.Helper()
	ps := fixture.ComparePixels(rgbBytes(res), pngRGB(t, rel))
	t.Logf("%d/%d values differ, %.4f%% more than 1 off, max %d", ps.Differ, ps.Total, 100*ps.FracOff1, ps.MaxDiff)
	if ps.FracOff1 > 0.001 || ps.MaxDiff > 4 {
		t.Errorf("%s: %+v", what, ps)
	}
}
