package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/cpu"

	"github.com/zimage/zimage/zimage/cpu/gemm"
)

func init() {
	register("version", "print the version, Go, CPU features and the CUDA driver and cuBLASLt found", runVersion)
}

// versionInfo is what "zimage version" reports (--json prints it as is).
type versionInfo struct {
	Module   string   `json:"module"`
	Version  string   `json:"version"`
	Commit   string   `json:"commit,omitempty"`
	Time     string   `json:"commit_time,omitempty"`
	Modified bool     `json:"modified,omitempty"`
	Go       string   `json:"go"`
	OS       string   `json:"os"`
	Arch     string   `json:"arch"`
	CPUs     int      `json:"cpus"`
	Features []string `json:"cpu_features"`
	Missing  []string `json:"cpu_features_missing,omitempty"`
	GEMM     string   `json:"gemm_kernel"`
	GEMMBF16 string   `json:"gemm_kernel_bf16"` // --precision bf16 products
	GEMMInt8 string   `json:"gemm_kernel_int8"` // bf16 mode's Q8_0 and K-quant products ("generic": none)
	CUDA     cudaInfo `json:"cuda"`
}

// cudaInfo describes the CUDA libraries found (version_cuda.go).
type cudaInfo struct {
	Driver        string   `json:"driver,omitempty"` // e.g. "12.4"
	DriverVersion int      `json:"driver_version,omitempty"`
	DriverError   string   `json:"driver_error,omitempty"`
	Devices       []string `json:"devices,omitempty"`
	DeviceError   string   `json:"device_error,omitempty"`
	CuBLASLt      string   `json:"cublaslt,omitempty"` // library name
	CuBLASLtVer   string   `json:"cublaslt_version,omitempty"`
	CuBLASLtError string   `json:"cublaslt_error,omitempty"`
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr,
		"usage: zimage version [--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "zimage version: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	v := collectVersion()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(stderr, "zimage version: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "zimage %s (%s)\n", v.Version, v.Module)
	switch {
	case v.Commit == "":
		fmt.Fprintln(stdout, "commit    unknown (built without VCS information, e.g. by go run or go test)")
	default:
		mod := ""
		if v.Modified {
			mod = ", with uncommitted changes"
		}
		fmt.Fprintf(stdout, "commit    %s (%s%s)\n", v.Commit, v.Time, mod)
	}
	fmt.Fprintf(stdout, "go        %s %s/%s, %d CPUs\n", v.Go, v.OS, v.Arch, v.CPUs)
	fmt.Fprintf(stdout, "cpu       %s", strings.Join(v.Features, " "))
	if len(v.Missing) > 0 {
		fmt.Fprintf(stdout, " (no %s)", strings.Join(v.Missing, ", "))
	}
	fmt.Fprintf(stdout, "; GEMM kernel %s (bf16 %s, int8 %s)\n", v.GEMM, v.GEMMBF16, v.GEMMInt8)
	c := v.CUDA
	if c.DriverError != "" {
		fmt.Fprintf(stdout, "cuda      driver not found: %s\n", c.DriverError)
	} else {
		fmt.Fprintf(stdout, "cuda      driver %s (%d)", c.Driver, c.DriverVersion)
		if c.DeviceError != "" {
			fmt.Fprintf(stdout, ", no usable device: %s\n", c.DeviceError)
		} else {
			fmt.Fprintf(stdout, ", %d device(s): %s\n", len(c.Devices), strings.Join(c.Devices, "; "))
		}
	}
	if c.CuBLASLtError != "" {
		fmt.Fprintf(stdout, "cublasLt  not found: %s\n", c.CuBLASLtError)
	} else {
		fmt.Fprintf(stdout, "cublasLt  %s (%s)\n", c.CuBLASLtVer, c.CuBLASLt)
	}
	return 0
}

func collectVersion() versionInfo {
	v := versionInfo{Module: "github.com/zimage/zimage", Version: "unknown", Go: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GEMM: gemm.KernelName(),
		GEMMBF16: gemm.BF16KernelName(), GEMMInt8: gemm.Q8KernelName()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path != "" {
			v.Module = bi.Main.Path
		}
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	v.Features, v.Missing = cpuFeatures()
	v.CUDA = probeCUDAInfo()
	return v
}

// cpuFeatures lists the instruction-set extensions the CPU kernels care
// about, present and missing.
func cpuFeatures() (have, missing []string) {
	var list []struct {
		name string
		ok   bool
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		list = []struct {
			name string
			ok   bool
		}{
			{"AVX2", cpu.X86.HasAVX2}, {"FMA", cpu.X86.HasFMA}, {"AVX-512F", cpu.X86.HasAVX512F},
			{"AVX512-BF16", cpu.X86.HasAVX512BF16}, {"AVX512-VNNI", cpu.X86.HasAVX512VNNI}, {"AVX-VNNI", cpu.X86.HasAVXVNNI},
		}
	case "arm64":
		list = []struct {
			name string
			ok   bool
		}{{"ASIMD", cpu.ARM64.HasASIMD}, {"FPHP", cpu.ARM64.HasFPHP}, {"ASIMDHP", cpu.ARM64.HasASIMDHP}, {"SVE", cpu.ARM64.HasSVE}}
	}
	for _, f := range list {
		if f.ok {
			have = append(have, f.name)
		} else {
			missing = append(missing, f.name)
		}
	}
	if len(list) == 0 {
		have = []string{"(not listed on " + runtime.GOARCH + ")"}
	}
	return have, missing
}
