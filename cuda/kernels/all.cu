// Unity translation unit: every kernel source, compiled into one fatbin
// (one CUmodule) by scripts/build-kernels.sh.
#include "elementwise.cu"
#include "norm.cu"
#include "rope.cu"
