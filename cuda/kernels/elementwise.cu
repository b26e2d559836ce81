// Elementwise, conversion and data-movement kernels.
#include "common.cuh"

// ---- dtype conversion (weight upload, ToHost, FromHost) ----

ZK_DEV float f16_to_f32(unsigned short h) {
	unsigned sign = (unsigned)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
	if (exp != 0) return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
	// zero or subnormal: man * 2^-24, exact in float
	float f = (float)man * 5.9604644775390625e-08f;
	return sign ? -f : f;
}
ZK_DEV float f8e4m3_to_f32(unsigned char v) {
	unsigned sign = (unsigned)(v >> 7) << 31, exp = (v >> 3) & 0xf, man = v & 7;
	if (exp == 0xf && man == 7) return __uint_as_float(sign | 0x7fc00000u);
	if (exp != 0) return __uint_as_float(sign | ((exp + 120) << 23) | (man << 20));
	float f = (float)man * (1.0f / 512.0f);
	return sign ? -f : f;
}
ZK_DEV float f8e5m2_to_f32(unsigned char v) { return f16_to_f32((unsigned short)v << 8); }

#define ZK_CVT(NAME, SRC, LOAD, DST)                                                         \
	extern "C" __global__ void NAME(const SRC* __restrict__ x, DST* __restrict__ y, int n) { \
		ZK_GRID_LOOP(i, n) { st(y, i, LOAD); }                                               \
	}
ZK_CVT(zk_cvt_f32_bf16, float, x[i], bf16)
ZK_CVT(zk_cvt_bf16_f32, bf16, bf2f(x[i]), float)
ZK_CVT(zk_cvt_f16_f32, unsigned short, f16_to_f32(x[i]), float)
ZK_CVT(zk_cvt_f16_bf16, unsigned short, f16_to_f32(x[i]), bf16)
ZK_CVT(zk_cvt_f8e4m3_f32, unsigned char, f8e4m3_to_f32(x[i]), float)
ZK_CVT(zk_cvt_f8e4m3_bf16, unsigned char, f8e4m3_to_f32(x[i]), bf16)
ZK_CVT(zk_cvt_f8e5m2_f32, unsigned char, f8e5m2_to_f32(x[i]), float)
ZK_CVT(zk_cvt_f8e5m2_bf16, unsigned char, f8e5m2_to_f32(x[i]), bf16)

// ---- activations and arithmetic ----

#define ZK_EW(S, T)                                                                                   \
	extern "C" __global__ void zk_silu_##S(const T* __restrict__ x, T* __restrict__ y, int n) {       \
		ZK_GRID_LOOP(i, n) { st(y, i, silu(ld(x, i))); }                                               \
	}                                                                                                 \
	extern "C" __global__ void zk_swiglu_##S(const T* __restrict__ g, const T* __restrict__ u,       \
	                                         T* __restrict__ y, int n) {                            \
		ZK_GRID_LOOP(i, n) { st(y, i, silu(ld(g, i)) * ld(u, i)); }                                    \
	}                                                                                                 \
	extern "C" __global__ void zk_add_##S(const T* __restrict__ a, const T* __restrict__ b,          \
	                                      T* __restrict__ y, int n) {                               \
		ZK_GRID_LOOP(i, n) { st(y, i, ld(a, i) + ld(b, i)); }                                          \
	}                                                                                                 \
	/* y = x*s + c */                                                                                 \
	extern "C" __global__ void zk_scale_##S(const T* __restrict__ x, T* __restrict__ y, int n,       \
	                                        float s, float c) {                                      \
		ZK_GRID_LOOP(i, n) { st(y, i, ld(x, i) * s + c); }                                             \
	}                                                                                                 \
	/* y = x * (1 + scale[col]), x [n/d, d] */                                                        \
	extern "C" __global__ void zk_modulate_##S(const T* __restrict__ x, const T* __restrict__ scale, \
	                                           T* __restrict__ y, int n, int d)  {                   \
		ZK_GRID_LOOP(i, n) { st(y, i, ld(x, i) * (1.0f + ld(scale, i % d))); }                         \
	}                                                                                                 \
	/* out = x + tanh(gate[col]) * y */                                                               \
	extern "C" __global__ void zk_gated_add_##S(const T* __restrict__ x, const T* __restrict__ y,    \
	                                            const T* __restrict__ gate, T* __restrict__ out,     \
	                                            int n, int d) {                                      \
		ZK_GRID_LOOP(i, n) { st(out, i, ld(x, i) + tanhf(ld(gate, i % d)) * ld(y, i)); }               \
	}                                                                                                 \
	/* y[c, p] += b[c] for y [n/hw, hw] (conv bias) */                                                \
	extern "C" __global__ void zk_chan_bias_##S(T* __restrict__ y, const T* __restrict__ b, int n,   \
	                                            int hw) {                                           \
		ZK_GRID_LOOP(i, n) { st(y, i, ld(y, i) + ld(b, i / hw)); }                                     \
	}
ZK_TYPES(ZK_EW)

// ---- data movement ----

#define ZK_MOVE(S, T)                                                                                  \
	/* nearest 2x: y [c, 2h, 2w] from x [c, h, w] */                                                   \
	extern "C" __global__ void zk_upsample2x_##S(const T* __restrict__ x, T* __restrict__ y, int c,     \
	                                             int h, int w) {                                      \
		int w2 = 2 * w, plane = 4 * h * w;                                                             \
		ZK_GRID_LOOP(i, c * plane) {                                                                   \
			int ch = i / plane, r = i % plane, oy = r / w2, ox = r % w2;                               \
			y[i] = x[(long)ch * h * w + (oy >> 1) * w + (ox >> 1)];                                    \
		}                                                                                              \
	}                                                                                                  \
	/* dst[r*ldd + c] = src[r*lds + c] for r < rows, c < cols (lds 0 repeats one row) */               \
	extern "C" __global__ void zk_copy2d_##S(const T* __restrict__ src, T* __restrict__ dst, int rows,  \
	                                         int cols, int lds, int ldd) {                            \
		ZK_GRID_LOOP(i, rows* cols) {                                                                  \
			int r = i / cols, c = i % cols;                                                            \
			dst[(long)r * ldd + c] = src[(long)r * lds + c];                                           \
		}                                                                                              \
	}                                                                                                  \
	/* y [cols, rows] = x [rows, cols]^T through a 32x32 shared tile; block 32x8 */                   \
	extern "C" __global__ void __launch_bounds__(256)                                                  \
	    zk_transpose_##S(const T* __restrict__ x, T* __restrict__ y, int rows, int cols) {             \
		__shared__ T tile[32][33];                                                                     \
		int bx = blockIdx.x * 32, by = blockIdx.y * 32;                                                \
		for (int j = threadIdx.y; j < 32; j += 8) {                                                    \
			int r = by + j, c = bx + threadIdx.x;                                                      \
			if (r < rows && c < cols) tile[j][threadIdx.x] = x[(long)r * cols + c];                    \
		}                                                                                              \
		__syncthreads();                                                                               \
		for (int j = threadIdx.y; j < 32; j += 8) {                                                    \
			int c = bx + j, r = by + threadIdx.x;                                                      \
			if (r < rows && c < cols) y[(long)c * rows + r] = tile[threadIdx.x][j];                    \
		}                                                                                              \
	}                                                                                                  \
	/* y [n, d] = table[ids[i]] (table of the same dtype) */                                           \
	extern "C" __global__ void zk_gather_##S(const T* __restrict__ table, const int* __restrict__ ids,  \
	                                         T* __restrict__ y, int n, int d) {                       \
		ZK_GRID_LOOP(i, n * d) {                                                                       \
			int r = i / d, c = i % d;                                                                  \
			y[i] = table[(long)ids[r] * d + c];                                                        \
		}                                                                                              \
	}                                                                                                  \
	/* im2col for a stride-1 conv: col[(ci*kh + ky)*kw + kx][p - p0] = x[ci, oy+ky-pad, ox+kx-pad]     \
	   for output positions p = oy*wo + ox in [p0, p0+np); zero outside the image. */                 \
	extern "C" __global__ void zk_im2col_##S(const T* __restrict__ x, T* __restrict__ col, int ci,     \
	                                         int h, int w, int kh, int kw, int pad, int p0, int np) {  \
		int wo = w + 2 * pad - kw + 1;                                                                 \
		ZK_GRID_LOOP(i, ci * kh * kw * np) {                                                           \
			int k = i / np, p = p0 + i % np;                                                           \
			int kx = k % kw, ky = (k / kw) % kh, c = k / (kw * kh);                                    \
			int oy = p / wo, ox = p % wo;                                                              \
			int iy = oy + ky - pad, ix = ox + kx - pad;                                                \
			T v;                                                                                       \
			if (iy >= 0 && iy < h && ix >= 0 && ix < w)                                                \
				v = x[((long)c * h + iy) * w + ix];                                                    \
			else                                                                                       \
				st(&v, 0, 0.0f);                                                                       \
			col[i] = v;                                                                                \
		}                                                                                              \
	}                                                                                                  \
	/* im2col for Downsample2D (3x3, stride 2, x padded with one zero row below and one zero column    \
	   right; h, w even): col[(c*3 + ky)*3 + kx][p - p0] = x[c, 2*oy+ky, 2*ox+kx] for output          \
	   positions p = oy*(w/2) + ox in [p0, p0+np); zero past the last row or column. */                \
	extern "C" __global__ void zk_im2col_s2_##S(const T* __restrict__ x, T* __restrict__ col, int ci,  \
	                                            int h, int w, int p0, int np) {                       \
		int wo = w / 2;                                                                                \
		ZK_GRID_LOOP(i, ci * 9 * np) {                                                                 \
			int k = i / np, p = p0 + i % np;                                                           \
			int kx = k % 3, ky = (k / 3) % 3, c = k / 9;                                               \
			int iy = 2 * (p / wo) + ky, ix = 2 * (p % wo) + kx;                                        \
			T v;                                                                                       \
			if (iy < h && ix < w)                                                                      \
				v = x[((long)c * h + iy) * w + ix];                                                    \
			else                                                                                       \
				st(&v, 0, 0.0f);                                                                       \
			col[i] = v;                                                                                \
		}                                                                                              \
	}
ZK_TYPES(ZK_MOVE)

// ---- synthetic weights ----

// y[i] = offset + scale * u, u uniform in [-1, 1) from a hash of (i, seed):
// deterministic full-size weights for benchmarks without a checkpoint.
#define ZK_FILL(S, T)                                                                                 \
	extern "C" __global__ void zk_fill_uniform_##S(T* __restrict__ y, int n, int seed, float scale,  \
	                                               float offset) {                                   \
		ZK_GRID_LOOP(i, n) {                                                                          \
			unsigned h = (unsigned)i * 0x9E3779B9u ^ (unsigned)seed;                                  \
			h ^= h >> 16;                                                                             \
			h *= 0x7feb352du;                                                                         \
			h ^= h >> 15;                                                                             \
			h *= 0x846ca68bu;                                                                         \
			h ^= h >> 16;                                                                             \
			st(y, i, offset + scale * ((float)(h >> 8) * (1.0f / 8388608.0f) - 1.0f));                \
		}                                                                                             \
	}
ZK_TYPES(ZK_FILL)
