package controlnet_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/controlnet"
)

// FuzzParseConfig: any bytes give a valid config or a typed error, never a
// panic; a config that parses passes Check or gives a *MismatchError.
func FuzzParseConfig(f *testing.F) {
	for _, p := range []string{dir + "/controlnet/config.json", dir + "/modes/controlnet/config.json", dir + "/modes/config_control_layers.json"} {
		data, err := os.ReadFile(filepath.Join(fixturefs.Path(f, filepath.Dir(p)), filepath.Base(p)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"control_layers_places": [0, 5, 10], "control_in_dim": 16, "add_control_noise_refiner": null}`))
	f.Add([]byte(`{"control_layers_places": [], "control_refiner_layers_places": [-1]}`))
	f.Add([]byte(`{"control_layers_places": [0], "control_in_dim": 33, "dim": 7, "n_heads": 0}`))
	f.Add([]byte(`[1, 2]`))
	d := weights.DefaultDiTConfig()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := controlnet.ParseConfig(data, "config.json")
		if err != nil {
			var ce *controlnet.ConfigError
			var we *weights.ConfigError
			if !errors.As(err, &ce) && !errors.As(err, &we) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if err := c.Check(d, 16); err != nil {
			var me *controlnet.MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("Check: untyped error %T: %v", err, err)
			}
		}
	})
}
