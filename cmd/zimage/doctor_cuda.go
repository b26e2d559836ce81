//go:build !windows

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
)

// doctorGPU fills the CUDA section: driver and cuBLASLt (paths, versions),
// the devices, and on a usable GPU the kernel self-test, the residency
// plans for its free memory and one timed DiT step. It reports whether the
// GPU was usable.
func doctorGPU(ctx context.Context, r *doctorReport, o doctorOptions, teC weights.Qwen3Config, ditC weights.DiTConfig, vaeC weights.VAEConfig) bool {
	c := &r.CUDA
	c.Driver = driver.LibraryPath()
	api, err := driver.Probe()
	if err != nil {
		c.DriverErr = flatLine(err.Error())
	} else {
		var v, n int32
		api.DriverGetVersion(&v)
		c.DriverVersion = fmt.Sprintf("CUDA %d.%d", v/1000, v%1000/10)
		api.DeviceGetCount(&n)
		for i := 0; i < int(n); i++ {
			d := doctorDevice{Ordinal: i, Supported: true}
			_, p, err := driver.DeviceProps(api, i)
			d.Name, d.CC, d.SMs, d.Total = p.Name, p.CC(), p.SMs, p.TotalMem
			var u [16]byte
			if dev, err := deviceHandle(api, i); err == nil && api.DeviceGetUuid(&u, dev) == driver.Success {
				d.UUID = fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
			}
			if err != nil {
				d.Supported, d.Err = false, flatLine(err.Error())
			}
			c.Devices = append(c.Devices, d)
		}
	}
	if lt, name, err := blaslt.Load(); err != nil {
		c.CuBLASLtErr = flatLine(err.Error())
	} else {
		c.CuBLASLt = name
		if lt.GetVersion != nil {
			c.CuBLASLtVersion = lt.GetVersion()
		}
	}
	if err := cuda.Available(); err != nil {
		c.Reason = flatLine(err.Error())
		return false
	}
	mode, _ := cuda.ParseSelfTestMode(o.selfTest)
	b, err := cuda.New(cuda.Options{SyntheticWeights: true, SelfTest: mode, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		c.Reason = flatLine(err.Error())
		r.Problems = append(r.Problems, "cuda: "+c.Reason)
		return false
	}
	defer b.Close()
	doctorBackend(ctx, r, o, b, teC, ditC, vaeC)
	return true
}

// doctorBackend fills the sections that need the opened GPU backend b
// (made with SyntheticWeights): the self-test, the free memory, the
// residency plans and the timed DiT step.
func doctorBackend(ctx context.Context, r *doctorReport, o doctorOptions, b *cuda.Backend, teC weights.Qwen3Config, ditC weights.DiTConfig, vaeC weights.VAEConfig) {
	c := &r.CUDA
	c.Usable = true
	if st := b.SelfTest(); st != nil {
		r.SelfTest, r.SelfTestTable = st, st.Table()
		for _, f := range st.Disabled() {
			r.Problems = append(r.Problems, fmt.Sprintf("self-test: kernel family %s disabled (%s used instead)", f, f.Fallback()))
		}
	}
	free, _, err := b.MemInfo()
	if err == nil && len(c.Devices) > 0 {
		c.Devices[0].Free = free
	}
	elem := 2
	fp := zimage.MeasureFootprint(synthetic.TextEncoder(teC), synthetic.DiT(ditC), synthetic.VAE(vaeC), teC, ditC, vaeC, elem)
	r.Plans = plans(zimage.PlanInput{Free: free, Overhead: b.CurrentBytes(), Scratch: zimage.CUDAScratch, Model: fp})
	if o.run {
		t := &doctorTiming{Device: "cuda (" + b.Device().Props().Name + ")", Size: fmt.Sprintf("%dx%d", o.size, o.size),
			What: fmt.Sprintf("one DiT step at %dx%d (after one warm-up), 100 caption tokens, synthetic weights of the model's shapes", o.size, o.size)}
		d, err := ditStep(ctx, b, ditC, synthetic.DiT(ditC), 1<<(len(vaeC.BlockOutChannels)-1), o.size, o.size, 100, 1)
		if err != nil {
			t.Err = flatLine(err.Error())
		}
		t.Measured, t.Step = d, d
		r.Timed = t
	}
}

func deviceHandle(api *driver.API, ordinal int) (driver.Device, error) {
	var d driver.Device
	return d, api.Check("cuDeviceGet", api.DeviceGet(&d, int32(ordinal)))
}
