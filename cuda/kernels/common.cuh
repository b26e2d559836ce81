// Shared helpers for the zimage kernels. Everything here compiles both with
// nvcc for the GPU and with g++ for the host shim (testdata/hostshim.h), so
// the non-tensor-core kernels can be run on the CPU in go test.
#pragma once

#ifndef ZK_HOST_SHIM
#include <stdint.h>
#define ZK_DEV __device__ __forceinline__
// ZK_DYN_SMEM(T, name) declares name as the block's dynamic shared memory
// (one file-scope declaration, so kernels of C and C++ linkage share it).
extern __shared__ __align__(16) unsigned char zk_dyn_smem_[];
#define ZK_DYN_SMEM(T, name) T* name = reinterpret_cast<T*>(zk_dyn_smem_)
#else
#define ZK_DEV inline
#endif

// bfloat16 storage type: the raw 16 bits. Conversion is done by hand (round
// to nearest even, like torch and weights.F32ToBF16) so the host shim and the
// GPU produce the same bits.
struct bf16 {
	unsigned short x;
};

ZK_DEV float bf2f(bf16 v) { return __uint_as_float(((unsigned)v.x) << 16); }

ZK_DEV bf16 f2bf(float f) {
	bf16 r;
#if defined(__CUDA_ARCH__)
	unsigned short h;
	asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
	r.x = h;
#else
	unsigned b = __float_as_uint(f);
	if ((b & 0x7fffffffu) > 0x7f800000u) {
		r.x = (unsigned short)((b >> 16) | 0x40u);
	} else {
		b += 0x7fffu + ((b >> 16) & 1u);
		r.x = (unsigned short)(b >> 16);
	}
#endif
	return r;
}

// ld / st read and write one element of an activation tensor as float.
ZK_DEV float ld(const float* p, long i) { return p[i]; }
ZK_DEV float ld(const bf16* p, long i) { return bf2f(p[i]); }
ZK_DEV void st(float* p, long i, float v) { p[i] = v; }
ZK_DEV void st(bf16* p, long i, float v) { p[i] = f2bf(v); }

// rnd rounds v to the storage type of p's tensor (what a store and a load
// give back).
ZK_DEV float rnd(const float*, float v) { return v; }
ZK_DEV float rnd(const bf16*, float v) { return bf2f(f2bf(v)); }

ZK_DEV float silu(float v) { return v / (1.0f + expf(-v)); }

// Reductions across a full warp (all 32 lanes must participate). The host
// shim computes the same butterfly in one exchange (same float results).
#ifndef ZK_HOST_SHIM
ZK_DEV float warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
ZK_DEV float warp_max(float v) {
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}
#else
ZK_DEV float warp_sum(float v) { return zk_warp_butterfly(v, false); }
ZK_DEV float warp_max(float v) { return zk_warp_butterfly(v, true); }
#endif

// Block-wide reductions for blocks of up to 1024 threads (a multiple of 32).
// scratch holds 32 floats; every thread gets the result. The leading
// __syncthreads makes back-to-back calls with the same scratch safe.
ZK_DEV float block_sum(float v, float* scratch) {
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	__syncthreads();
	if (lane == 0) scratch[warp] = v;
	__syncthreads();
	v = lane < nw ? scratch[lane] : 0.f;
	return warp_sum(v);
}
ZK_DEV float block_max(float v, float* scratch) {
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0) scratch[warp] = v;
	__syncthreads();
	v = lane < nw ? scratch[lane] : -INFINITY;
	return warp_max(v);
}

// Grid-stride loop over n < 2^31 elements. Indices are int on purpose: 64-bit
// division compiles to a slow subroutine call (and a stack frame, which the
// build rejects); only pointer offsets are widened, by multiplication.
#define ZK_GRID_LOOP(i, n) for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

// ZK_TYPES(X) instantiates X(suffix, type) for every activation type.
#define ZK_TYPES(X) X(f32, float) X(bf16, bf16)
