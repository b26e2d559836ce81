// Rotary position embedding and the row softmax of the GEMM attention path.
#include "common.cuh"

#define ZK_ROPE(S, T)                                                                                  \
	/* x, y [l, heads*dh]; cs, sn [l, dh/2]. interleaved: pair (2j, 2j+1); else pair (j, j+dh/2). */   \
	extern "C" __global__ void zk_rope_##S(const T* __restrict__ x, const T* __restrict__ cs,           \
	                                       const T* __restrict__ sn, T* __restrict__ y, int l,         \
	                                       int heads, int dh, int interleaved) {                      \
		int half = dh / 2;                                                                             \
		ZK_GRID_LOOP(i, l * heads * half) {                                                            \
			int t = i / (heads * half), j = i % half;                                                  \
			long base = (long)(i / half) * dh; /* (t*heads + h) * dh */                                \
			float c = ld(cs, (long)t * half + j), s = ld(sn, (long)t * half + j);                      \
			long a = interleaved ? base + 2 * j : base + j;                                            \
			long b = interleaved ? a + 1 : a + half;                                                   \
			float x0 = ld(x, a), x1 = ld(x, b);                                                        \
			st(y, a, x0 * c - x1 * s);                                                                 \
			st(y, b, x1 * c + x0 * s);                                                                 \
		}                                                                                              \
	}
ZK_TYPES(ZK_ROPE)

// Softmax over rows of float32 scores s [rows, cols] (row stride cols) into p
// (same layout, dtype T). Row r is query q0 + r % rows_per_batch of its
// batch; with causal set, keys j > q are masked (p = 0). One block per row.
#define ZK_SOFTMAX(S, T)                                                                               \
	extern "C" __global__ void __launch_bounds__(256)                                                  \
	    zk_softmax_##S(const float* __restrict__ s, T* __restrict__ p, int cols, int rows_per_batch,   \
	                   int q0, int causal) {                                                          \
		__shared__ float scratch[32];                                                                  \
		int row = blockIdx.x;                                                                          \
		const float* sr = s + (long)row * cols;                                                        \
		T* pr = p + (long)row * cols;                                                                  \
		int n = cols;                                                                                  \
		if (causal) n = min(cols, q0 + row % rows_per_batch + 1);                                      \
		float m = -INFINITY;                                                                           \
		for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, sr[j]);                         \
		m = block_max(m, scratch);                                                                     \
		float sum = 0.f;                                                                               \
		for (int j = threadIdx.x; j < n; j += blockDim.x) sum += expf(sr[j] - m);                      \
		float inv = 1.0f / block_sum(sum, scratch);                                                    \
		for (int j = threadIdx.x; j < cols; j += blockDim.x) st(pr, j, j < n ? expf(sr[j] - m) * inv : 0.f); \
	}
ZK_TYPES(ZK_SOFTMAX)

// The same with one warp per row (blockDim/32 rows per block), for rows short
// enough that a whole block per row would idle.
#define ZK_SOFTMAX_WARP(S, T)                                                                          \
	extern "C" __global__ void __launch_bounds__(256)                                                  \
	    zk_softmax_warp_##S(const float* __restrict__ s, T* __restrict__ p, int rows, int cols,        \
	                        int rows_per_batch, int q0, int causal) {                                 \
		int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;        \
		if (row >= rows) return; /* whole warp leaves */                                               \
		const float* sr = s + (long)row * cols;                                                        \
		T* pr = p + (long)row * cols;                                                                  \
		int n = cols;                                                                                  \
		if (causal) n = min(cols, q0 + row % rows_per_batch + 1);                                      \
		float m = -INFINITY;                                                                           \
		for (int j = lane; j < n; j += 32) m = fmaxf(m, sr[j]);                                        \
		m = warp_max(m);                                                                               \
		float sum = 0.f;                                                                               \
		for (int j = lane; j < n; j += 32) sum += expf(sr[j] - m);                                     \
		float inv = 1.0f / warp_sum(sum);                                                              \
		for (int j = lane; j < cols; j += 32) st(pr, j, j < n ? expf(sr[j] - m) * inv : 0.f);          \
	}
ZK_TYPES(ZK_SOFTMAX_WARP)
