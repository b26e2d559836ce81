// Unity translation unit: every kernel source, compiled into one fatbin
// (one CUmodule) by scripts/build-kernels.sh. The host shim used by go test
// compiles this file with g++ too; the tensor-core kernels (prefix zk_tc_)
// run there through host versions of their inline-PTX helpers.
#include "elementwise.cu"
#include "norm.cu"
#include "rope.cu"
#include "attn.cu"
#include "fused.cu"
#include "attn_mma.cu"
#include "dequant.cu"
