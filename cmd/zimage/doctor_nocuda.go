//go:build windows

package main

import (
	"context"

	"github.com/zimage/zimage/weights"
)

// doctorGPU notes that this build has no CUDA support.
func doctorGPU(_ context.Context, r *doctorReport, _ doctorOptions, _ weights.Qwen3Config, _ weights.DiTConfig, _ weights.VAEConfig) bool {
	r.CUDA.Reason = "this build has no CUDA support"
	return false
}
