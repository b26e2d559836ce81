// Normalisations with float32 statistics.
#include "common.cuh"

// RMSNorm and LayerNorm: one warp per row, blockDim/32 rows per block.
// Rows are re-read from global memory for each pass (they stay in L1/L2),
// which keeps register use independent of the row length.
#define ZK_ROWNORM(S, T)                                                                              \
	/* y = x * rsqrt(mean(x^2) + eps) * w (w may be null) */                                          \
	extern "C" __global__ void __launch_bounds__(256)                                                 \
	    zk_rmsnorm_##S(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int rows,  \
	                   int d, float eps) {                                                           \
		int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;                       \
		if (row >= rows) return; /* whole warp leaves; no block barrier below */                      \
		const T* xr = x + (long)row * d;                                                              \
		T* yr = y + (long)row * d;                                                                    \
		float ss = 0.f;                                                                               \
		for (int i = lane; i < d; i += 32) {                                                          \
			float v = ld(xr, i);                                                                      \
			ss += v * v;                                                                              \
		}                                                                                             \
		float r = rsqrtf(warp_sum(ss) / (float)d + eps);                                              \
		for (int i = lane; i < d; i += 32) {                                                          \
			float v = ld(xr, i) * r;                                                                  \
			if (w) v *= ld(w, i);                                                                     \
			st(yr, i, v);                                                                             \
		}                                                                                             \
	}                                                                                                 \
	/* y = (x - mean) * rsqrt(var + eps), biased variance, no affine */                               \
	extern "C" __global__ void __launch_bounds__(256)                                                 \
	    zk_layernorm_##S(const T* __restrict__ x, T* __restrict__ y, int rows, int d, float eps) {     \
		int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;                       \
		if (row >= rows) return;                                                                      \
		const T* xr = x + (long)row * d;                                                              \
		T* yr = y + (long)row * d;                                                                    \
		float s = 0.f;                                                                                \
		for (int i = lane; i < d; i += 32) s += ld(xr, i);                                            \
		float mean = warp_sum(s) / (float)d;                                                          \
		float ss = 0.f;                                                                               \
		for (int i = lane; i < d; i += 32) {                                                          \
			float v = ld(xr, i) - mean;                                                               \
			ss += v * v;                                                                              \
		}                                                                                             \
		float r = rsqrtf(warp_sum(ss) / (float)d + eps);                                              \
		for (int i = lane; i < d; i += 32) st(yr, i, (ld(xr, i) - mean) * r);                         \
	}
ZK_TYPES(ZK_ROWNORM)

// GroupNorm over x [C, HW]: a group is the contiguous range of C/groups
// channels. Pass 1 (gn_stats, grid chunks x groups) writes each chunk's mean
// and sum of squared deviations (two passes over the chunk, exact in float);
// pass 2 (gn_apply, grid blocks x groups) merges a group's chunks with Chan's
// formula, normalises and, with act set, applies SiLU (the VAE's
// GroupNorm → SiLU in one pass). gn_apply states a minimum of 4 blocks per SM:
// with the bare block size, ptxas 11.8 spilled the f32 variant on sm_90.
// Chunk k of chunks over len elements is [gn_lo(k), gn_lo(k+1)).
ZK_DEV int gn_lo(int len, int chunks, int k) { return (int)(((long long)len * k) / chunks); }

#define ZK_GN(S, T)                                                                                    \
	extern "C" __global__ void __launch_bounds__(256)                                                  \
	    zk_gn_stats_##S(const T* __restrict__ x, float* __restrict__ part, int c, int hw, int groups,  \
	                    int chunks) {                                                                 \
		__shared__ float scratch[32];                                                                  \
		int g = blockIdx.y, ch = blockIdx.x;                                                           \
		int len = (c / groups) * hw, a = gn_lo(len, chunks, ch), b = gn_lo(len, chunks, ch + 1);      \
		const T* xg = x + (long)g * len;                                                               \
		float s = 0.f;                                                                                 \
		for (int i = a + threadIdx.x; i < b; i += blockDim.x) s += ld(xg, i);                          \
		float mean = block_sum(s, scratch) / (float)(b - a);                                           \
		float m2 = 0.f;                                                                                \
		for (int i = a + threadIdx.x; i < b; i += blockDim.x) {                                        \
			float v = ld(xg, i) - mean;                                                                \
			m2 += v * v;                                                                               \
		}                                                                                              \
		m2 = block_sum(m2, scratch);                                                                   \
		if (threadIdx.x == 0) {                                                                        \
			part[2 * (g * chunks + ch)] = mean;                                                        \
			part[2 * (g * chunks + ch) + 1] = m2;                                                      \
		}                                                                                              \
	}                                                                                                  \
	extern "C" __global__ void __launch_bounds__(256, 4)                                                  \
	    zk_gn_apply_##S(const T* __restrict__ x, const float* __restrict__ part,                       \
	                    const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y, int c,  \
	                    int hw, int groups, int chunks, float eps, int act) {                         \
		__shared__ float stat[2];                                                                      \
		int g = blockIdx.y, cpg = c / groups, len = cpg * hw;                                          \
		if (threadIdx.x == 0) {                                                                        \
			float n = 0.f, mean = 0.f, m2 = 0.f;                                                       \
			for (int k = 0; k < chunks; k++) {                                                         \
				float nb = (float)(gn_lo(len, chunks, k + 1) - gn_lo(len, chunks, k));                 \
				float mb = part[2 * (g * chunks + k)], m2b = part[2 * (g * chunks + k) + 1];           \
				float nn = n + nb, delta = mb - mean;                                                  \
				mean += delta * nb / nn;                                                               \
				m2 += m2b + delta * delta * n * nb / nn;                                               \
				n = nn;                                                                                \
			}                                                                                          \
			stat[0] = mean;                                                                            \
			stat[1] = rsqrtf(m2 / n + eps);                                                            \
		}                                                                                              \
		__syncthreads();                                                                               \
		float mean = stat[0], r = stat[1];                                                             \
		const T* xg = x + (long)g * len;                                                               \
		T* yg = y + (long)g * len;                                                                     \
		for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < len; i += gridDim.x * blockDim.x) {    \
			int ch = g * cpg + i / hw;                                                                 \
			float v = (ld(xg, i) - mean) * r * ld(w, ch) + ld(bias, ch);                               \
			st(yg, i, act ? silu(v) : v);                                                              \
		}                                                                                              \
	}
ZK_TYPES(ZK_GN)
