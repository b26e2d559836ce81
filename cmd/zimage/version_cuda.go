//go:build !windows

package main

import (
	"fmt"
	"strings"

	"github.com/zimage/zimage/cuda/blaslt"
	"github.com/zimage/zimage/cuda/driver"
)

// probeCUDAInfo loads the CUDA driver and cuBLASLt the way the CUDA backend
// does and reports their versions, or why they are not usable.
func probeCUDAInfo() cudaInfo {
	var c cudaInfo
	short := func(err error) string {
		msg := strings.ReplaceAll(oneLine(err), "cuda: ", "")
		if msg == "" {
			msg = "no reason given"
		}
		return msg
	}
	if api, err := driver.Load(); err != nil {
		c.DriverError = short(err)
	} else {
		var v int32
		if err := api.Check("cuDriverGetVersion", api.DriverGetVersion(&v)); err != nil {
			c.DriverError = short(err)
		} else {
			c.DriverVersion = int(v)
			c.Driver = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
			if _, n, err := driver.Initialize(api); err != nil {
				c.DeviceError = short(err)
			} else {
				for i := range n {
					if _, p, err := driver.DeviceProps(api, i); err != nil {
						c.Devices = append(c.Devices, fmt.Sprintf("%d: %s", i, short(err)))
					} else {
						c.Devices = append(c.Devices, fmt.Sprintf("%d: %s (sm_%d, %.1f GB)", i, p.Name, p.CC(), float64(p.TotalMem)/1e9))
					}
				}
			}
		}
	}
	if api, name, err := blaslt.Load(); err != nil {
		c.CuBLASLtError = short(err)
	} else {
		v := api.GetVersion()
		c.CuBLASLt = name
		c.CuBLASLtVer = fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
	}
	return c
}
