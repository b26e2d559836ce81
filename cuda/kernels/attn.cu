// Fused attention without tensor cores: any head size, float32 scores,
// softmax statistics and accumulators, no [Lq, Lk] matrix. It serves the
// float32 precision mode and every head size the tensor-core kernels do not
// take, and it runs in the host shim, so go test checks it against the CPU
// backend.
//
// Block: 4 warps for one head and one chunk of up to 512 output dims
// (blockIdx.z; head sizes above 512 recompute the scores per chunk). Warp w
// owns query rows q0 + 4w .. q0 + 4w + 3. Keys go in tiles of 32:
//   - scores: lane j computes the dot products of key j0+j with the warp's 4
//     query rows; the keys are staged through shared memory 64 dims at a
//     time (coalesced loads, a padded row stride so the per-lane reads do
//     not conflict), the query rows sit in shared memory scaled by
//     scale·log2(e) (softmax in the exp2 domain);
//   - online softmax: one warp max per row and tile; each lane keeps a
//     partial row sum (every lane sees the same rescaling), summed at the end;
//   - P·V: lanes own output dims (lane + 32i), keys in order, p broadcast
//     through shared memory, V rows read straight from global memory
//     (coalesced, shared by the block's warps through L1).
#include "common.cuh"

#define FA_WARPS 4
#define FA_RW 4     // query rows per warp
#define FA_BQ (FA_WARPS * FA_RW)
#define FA_BK 32    // keys per tile (one per lane)
#define FA_KC 64    // key dims staged per step
#define FA_NPL 16   // output dims per lane: a chunk of 512

template <typename T>
ZK_DEV void flash_generic(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          T* __restrict__ o, int lq, int lk, int heads, int kv_heads, int dh, float scale,
                          int causal) {
	ZK_DYN_SMEM(float, smem);
	float* qs = smem;                                  // [FA_BQ][dh]
	float* ks = qs + FA_BQ * dh;                       // [FA_BK][FA_KC + 1]
	float* ps = ks + FA_BK * (FA_KC + 1);              // [FA_WARPS][FA_RW][FA_BK]
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int head = blockIdx.y, kvh = head / (heads / kv_heads);
	const int c0 = blockIdx.z * (32 * FA_NPL);         // first output dim of this block
	const int q0 = blockIdx.x * FA_BQ, r0 = q0 + warp * FA_RW;
	const long ldq = (long)heads * dh, ldk = (long)kv_heads * dh;
	const float sl2 = scale * 1.4426950408889634f;
	float* pw = ps + warp * FA_RW * FA_BK;

	for (int i = threadIdx.x; i < FA_BQ * dh; i += blockDim.x) {
		int r = i / dh, c = i % dh;
		qs[i] = q0 + r < lq ? ld(q, (long)(q0 + r) * ldq + (long)head * dh + c) * sl2 : 0.f;
	}

	float acc[FA_RW][FA_NPL];
	float m[FA_RW], lpart[FA_RW];
#pragma unroll
	for (int r = 0; r < FA_RW; r++) {
		m[r] = -INFINITY;
		lpart[r] = 0.f;
#pragma unroll
		for (int i = 0; i < FA_NPL; i++) acc[r][i] = 0.f;
	}

	// Keys past the block's last query row are masked for every row of it.
	const int kend = causal ? min(lk, q0 + FA_BQ) : lk;
	for (int j0 = 0; j0 < kend; j0 += FA_BK) {
		const int nk = min(FA_BK, kend - j0);
		float s[FA_RW];
#pragma unroll
		for (int r = 0; r < FA_RW; r++) s[r] = 0.f;
		for (int cc = 0; cc < dh; cc += FA_KC) {
			const int nc = min(FA_KC, dh - cc);
			__syncthreads();  // previous chunk consumed (and the query rows stored)
			for (int i = threadIdx.x; i < FA_BK * FA_KC; i += blockDim.x) {
				int j = i / FA_KC, c = i % FA_KC;
				ks[j * (FA_KC + 1) + c] = j < nk && c < nc ? ld(k, (long)(j0 + j) * ldk + (long)kvh * dh + cc + c) : 0.f;
			}
			__syncthreads();
			const float* kr = ks + lane * (FA_KC + 1);
			const float* qc = qs + warp * FA_RW * dh + cc;
			for (int c = 0; c < nc; c++) {
				float kv = kr[c];
#pragma unroll
				for (int r = 0; r < FA_RW; r++) s[r] += qc[r * dh + c] * kv;
			}
		}

		const int key = j0 + lane;
#pragma unroll
		for (int r = 0; r < FA_RW; r++) {
			if (lane >= nk || (causal && key > r0 + r)) s[r] = -INFINITY;
			float mnew = fmaxf(m[r], warp_max(s[r]));
			float muse = mnew == -INFINITY ? 0.f : mnew;  // row fully masked so far
			float alpha = exp2f(m[r] - muse);
			float p = exp2f(s[r] - muse);
			m[r] = mnew;
			lpart[r] = lpart[r] * alpha + p;
			pw[r * FA_BK + lane] = p;
#pragma unroll
			for (int i = 0; i < FA_NPL; i++) acc[r][i] *= alpha;
		}
		__syncwarp();
		for (int j = 0; j < nk; j++) {
			const T* vr = v + (long)(j0 + j) * ldk + (long)kvh * dh + c0;
			float p[FA_RW];
#pragma unroll
			for (int r = 0; r < FA_RW; r++) p[r] = pw[r * FA_BK + j];
#pragma unroll
			for (int i = 0; i < FA_NPL; i++) {
				int c = lane + 32 * i;
				if (c0 + c < dh) {
					float vv = ld(vr, c);
#pragma unroll
					for (int r = 0; r < FA_RW; r++) acc[r][i] += p[r] * vv;
				}
			}
		}
		__syncwarp();  // p rows read before the next tile overwrites them
	}

#pragma unroll
	for (int r = 0; r < FA_RW; r++) {
		float l = warp_sum(lpart[r]);
		float inv = l > 0.f ? 1.f / l : 0.f;
		int row = r0 + r;
		if (row < lq) {
			T* orow = o + (long)row * ldq + (long)head * dh + c0;
#pragma unroll
			for (int i = 0; i < FA_NPL; i++) {
				int c = lane + 32 * i;
				if (c0 + c < dh) st(orow, c, acc[r][i] * inv);
			}
		}
	}
}

// q [lq, heads*dh], k and v [lk, kv_heads*dh], o like q. Grid (ceil(lq/16),
// heads, ceil(dh/512)), block 128, dynamic shared memory
// 4·(16·dh + 32·65 + 512) bytes.
#define ZK_FLASH(S, T)                                                                                 \
	extern "C" __global__ void __launch_bounds__(128)                                                  \
	    zk_flash_attn_##S(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,   \
	                      T* __restrict__ o, int lq, int lk, int heads, int kv_heads, int dh,          \
	                      float scale, int causal) {                                                   \
		flash_generic<T>(q, k, v, o, lq, lk, heads, kv_heads, dh, scale, causal);                      \
	}
ZK_TYPES(ZK_FLASH)
