package vae

import "github.com/zimage/zimage/zimage/cpu"

// The CPU backend offers the ops the decoder looks for (inplace.go).
var (
	_ inPlacer           = (*cpu.Backend)(nil)
	_ upsampleConver     = (*cpu.Backend)(nil)
	_ fusedGroupNormSiLU = (*cpu.Backend)(nil)
)
