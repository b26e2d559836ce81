// Fused chains of the networks' elementwise and normalisation ops, each one
// pass over memory where the op sequence makes two or three. Float32
// arithmetic throughout, one rounding to the storage type at the end (the
// sequence rounds after every op). Used through the cuda.Backend methods of
// the fused.Ops interface.
#include "common.cuh"

// RMSNorm with optional inputs around it, one warp per row of d values:
//   v   = x (+ xadd)                 sum (if set) = v, rounded; the norm uses
//                                    the rounded value, as the sequence would
//   out = v·rsqrt(mean(v²)+eps) (·w) (·(1 + scale))
//   y   = res + tanh(gate)·out       (if res; no gate: res + out), else out
// w, scale, gate are [d] vectors broadcast over rows; null pointers are
// absent inputs. Covers RMSNorm→Modulate (DiT, before attention and FFN),
// RMSNorm→GatedAdd (DiT sandwich norm + gated residual) and Add→RMSNorm
// (Qwen3 residual + next norm).
#define ZK_RMSNORM_EX(S, T)                                                                             \
	extern "C" __global__ void __launch_bounds__(256) zk_rmsnorm_ex_##S(                                \
	    const T* __restrict__ x, const T* __restrict__ xadd, T* __restrict__ sum, const T* __restrict__ w, \
	    const T* __restrict__ scale, const T* __restrict__ res, const T* __restrict__ gate,              \
	    T* __restrict__ y, int rows, int d, float eps) {                                                \
		int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;         \
		if (row >= rows) return; /* whole warp leaves; no block barrier below */                        \
		long base = (long)row * d;                                                                      \
		float ss = 0.f;                                                                                 \
		for (int i = lane; i < d; i += 32) {                                                            \
			float v = ld(x, base + i);                                                                  \
			if (xadd) {                                                                                 \
				v = rnd(x, v + ld(xadd, base + i));                                                     \
				if (sum) st(sum, base + i, v);                                                          \
			}                                                                                           \
			ss += v * v;                                                                                \
		}                                                                                               \
		float r = rsqrtf(warp_sum(ss) / (float)d + eps);                                                \
		for (int i = lane; i < d; i += 32) {                                                            \
			float v = ld(x, base + i);                                                                  \
			if (xadd) v = rnd(x, v + ld(xadd, base + i));                                               \
			v *= r;                                                                                     \
			if (w) v *= ld(w, i);                                                                       \
			if (scale) v *= 1.0f + ld(scale, i);                                                        \
			if (res) v = ld(res, base + i) + (gate ? tanhf(ld(gate, i)) : 1.0f) * v;                    \
			st(y, base + i, v);                                                                         \
		}                                                                                               \
	}
ZK_TYPES(ZK_RMSNORM_EX)

// Per-head RMSNorm then RoPE (DiT and Qwen3 q/k): x, y [l, heads*dh], one
// warp per (token, head) row of dh values normalised over dh (gain w [dh],
// may be null), then rotated by cs, sn [l, dh/2]: interleaved pairs
// (2j, 2j+1) or half-split pairs (j, j+dh/2).
#define ZK_HEAD_NORM_ROPE(S, T)                                                                         \
	extern "C" __global__ void __launch_bounds__(256) zk_head_norm_rope_##S(                            \
	    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ cs,                    \
	    const T* __restrict__ sn, T* __restrict__ y, int l, int heads, int dh, float eps,               \
	    int interleaved) {                                                                              \
		int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;         \
		if (row >= l * heads) return;                                                                   \
		int t = row / heads, half = dh / 2;                                                             \
		long base = (long)row * dh;                                                                     \
		float ss = 0.f;                                                                                 \
		for (int i = lane; i < dh; i += 32) {                                                           \
			float v = ld(x, base + i);                                                                  \
			ss += v * v;                                                                                \
		}                                                                                               \
		float r = rsqrtf(warp_sum(ss) / (float)dh + eps);                                               \
		for (int j = lane; j < half; j += 32) {                                                         \
			int a = interleaved ? 2 * j : j, b = interleaved ? a + 1 : j + half;                        \
			float x0 = ld(x, base + a) * r, x1 = ld(x, base + b) * r;                                   \
			if (w) {                                                                                    \
				x0 *= ld(w, a);                                                                         \
				x1 *= ld(w, b);                                                                         \
			}                                                                                           \
			float c = ld(cs, (long)t * half + j), s = ld(sn, (long)t * half + j);                       \
			st(y, base + a, x0 * c - x1 * s);                                                           \
			st(y, base + b, x1 * c + x0 * s);                                                           \
		}                                                                                               \
	}
ZK_TYPES(ZK_HEAD_NORM_ROPE)
