// Fused flash attention on tensor cores (sm_80+): bf16 inputs, float32
// accumulation and softmax statistics, head size 128, grouped-query heads and
// an optional causal mask. GPU only (inline PTX): the host shim skips zk_tc_*.
//
// Block: 4 warps, 64 query rows (16 per warp) of one head. The block's Q
// tile and each 64-key K and V tile live in shared memory (XOR-swizzled
// 16-byte chunks so ldmatrix is conflict-free). Per key tile a warp computes
// S = Q·Kᵀ with mma.m16n8k16 (fragments by ldmatrix), updates the running
// row max and sum (online softmax, exp2 domain), rescales its O accumulator
// and adds P·V, P taken straight from the S accumulators as the A operand.
#include "common.cuh"

#ifndef ZK_HOST_SHIM

#define TC_D 128   // head size
#define TC_BQ 64   // query rows per block
#define TC_BK 64   // keys per tile
#define TC_CH 16   // 16-byte chunks per row (128 bf16)

// Element offset of (row, col) in a swizzled [rows][128] bf16 tile.
__device__ __forceinline__ int tc_swz(int row, int col) {
	return row * TC_D + ((((col >> 3) ^ (row & 7)) << 3) | (col & 7));
}

__device__ __forceinline__ unsigned tc_smem(const void* p) {
	return (unsigned)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void tc_ldsm_x4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
	             : "r"(addr));
}

__device__ __forceinline__ void tc_ldsm_x4_t(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
	             : "r"(addr));
}

// c += a·b for one m16n8k16 bf16 tile.
__device__ __forceinline__ void tc_mma(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                       unsigned b1) {
	asm volatile(
	    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
	    "{%0,%1,%2,%3};\n"
	    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	    : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Packs (lo, hi) into bf16x2 with lo in the low half (the lower column).
__device__ __forceinline__ unsigned tc_pack(float lo, float hi) {
	unsigned r;
	asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
	return r;
}

// Copies rows [r0, r0+64) of a [n][ld] bf16 matrix (128 columns from col0)
// into a swizzled tile, zero-filling rows past n.
__device__ __forceinline__ void tc_load_tile(bf16* tile, const bf16* __restrict__ g, int r0, int n, long ld) {
	for (int c = threadIdx.x; c < TC_BQ * TC_CH; c += blockDim.x) {
		int row = c / TC_CH, ch = c % TC_CH;
		uint4 v = make_uint4(0, 0, 0, 0);
		if (r0 + row < n) v = *reinterpret_cast<const uint4*>(g + (long)(r0 + row) * ld + ch * 8);
		*reinterpret_cast<uint4*>(tile + tc_swz(row, ch * 8)) = v;
	}
}

// q [lq, heads*128], k and v [lk, kv_heads*128], o like q. Grid (ceil(lq/64),
// heads), block 128, dynamic shared memory 3·64·128·2 = 48 KiB.
extern "C" __global__ void __launch_bounds__(128)
    zk_tc_flash_attn_bf16_d128(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                               bf16* __restrict__ o, int lq, int lk, int heads, int kv_heads, float scale,
                               int causal) {
	ZK_DYN_SMEM(bf16, smem);
	bf16* sq = smem;
	bf16* sk = smem + TC_BQ * TC_D;
	bf16* sv = smem + 2 * TC_BQ * TC_D;

	const int head = blockIdx.y, kvh = head / (heads / kv_heads);
	const int q0 = blockIdx.x * TC_BQ;
	const long ldq = (long)heads * TC_D, ldk = (long)kv_heads * TC_D;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const float sl2 = scale * 1.4426950408889634f;  // scores in the exp2 domain

	tc_load_tile(sq, q + head * TC_D, q0, lq, ldq);

	float oacc[16][4];
#pragma unroll
	for (int j = 0; j < 16; j++) oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.f;
	float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

	// Query rows of this thread: qa (fragment rows g) and qb (g + 8).
	const int qa = q0 + warp * 16 + g, qb = qa + 8;
	int kend = lk;
	if (causal) kend = min(lk, q0 + TC_BQ);

	for (int k0 = 0; k0 < kend; k0 += TC_BK) {
		__syncthreads();  // previous tile fully consumed (and Q stored, first time)
		tc_load_tile(sk, k + kvh * TC_D, k0, lk, ldk);
		tc_load_tile(sv, v + kvh * TC_D, k0, lk, ldk);
		__syncthreads();

		// S[16 rows, 64 keys] = Q_w · K_tileᵀ
		float s[8][4];
#pragma unroll
		for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < TC_D; kk += 16) {
			unsigned a0, a1, a2, a3;
			{
				int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = kk + (lane >> 4) * 8;
				tc_ldsm_x4(tc_smem(sq + tc_swz(row, col)), a0, a1, a2, a3);
			}
#pragma unroll
			for (int n = 0; n < 8; n += 2) {
				unsigned b0, b1, b2, b3;
				int key = n * 8 + (lane & 7) + (lane >> 4) * 8, col = kk + ((lane >> 3) & 1) * 8;
				tc_ldsm_x4(tc_smem(sk + tc_swz(key, col)), b0, b1, b2, b3);
				tc_mma(s[n], a0, a1, a2, a3, b0, b1);
				tc_mma(s[n + 1], a0, a1, a2, a3, b2, b3);
			}
		}

		// Mask, scale, online softmax. s[j][0..1] are row qa, keys k0+8j+2t4+{0,1};
		// s[j][2..3] row qb.
		float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
		for (int j = 0; j < 8; j++) {
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int key = k0 + j * 8 + t4 * 2 + (e & 1);
				int qi = (e < 2) ? qa : qb;
				bool ok = key < lk && !(causal && key > qi);
				s[j][e] = ok ? s[j][e] * sl2 : -INFINITY;
				mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
			}
		}
		float alpha[2];
#pragma unroll
		for (int r = 0; r < 2; r++) {
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
			float mnew = fmaxf(mrow[r], mx[r]);
			float muse = mnew == -INFINITY ? 0.f : mnew;  // row fully masked so far
			alpha[r] = exp2f(mrow[r] - muse);
			mrow[r] = mnew;
			mx[r] = muse;
			lrow[r] *= alpha[r];
		}
#pragma unroll
		for (int j = 0; j < 8; j++) {
			s[j][0] = exp2f(s[j][0] - mx[0]);
			s[j][1] = exp2f(s[j][1] - mx[0]);
			s[j][2] = exp2f(s[j][2] - mx[1]);
			s[j][3] = exp2f(s[j][3] - mx[1]);
			lrow[0] += s[j][0] + s[j][1];
			lrow[1] += s[j][2] + s[j][3];
		}
#pragma unroll
		for (int j = 0; j < 16; j++) {
			oacc[j][0] *= alpha[0];
			oacc[j][1] *= alpha[0];
			oacc[j][2] *= alpha[1];
			oacc[j][3] *= alpha[1];
		}

		// O[16, 128] += P[16, 64] · V_tile[64, 128]
#pragma unroll
		for (int kb = 0; kb < 4; kb++) {  // 16 keys per step
			unsigned a0 = tc_pack(s[2 * kb][0], s[2 * kb][1]);
			unsigned a1 = tc_pack(s[2 * kb][2], s[2 * kb][3]);
			unsigned a2 = tc_pack(s[2 * kb + 1][0], s[2 * kb + 1][1]);
			unsigned a3 = tc_pack(s[2 * kb + 1][2], s[2 * kb + 1][3]);
#pragma unroll
			for (int n = 0; n < 16; n += 2) {  // 8 dims per tile, two tiles per ldmatrix
				unsigned b0, b1, b2, b3;
				int key = kb * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = n * 8 + (lane >> 4) * 8;
				tc_ldsm_x4_t(tc_smem(sv + tc_swz(key, col)), b0, b1, b2, b3);
				tc_mma(oacc[n], a0, a1, a2, a3, b0, b1);
				tc_mma(oacc[n + 1], a0, a1, a2, a3, b2, b3);
			}
		}
	}

	// Normalise by the row sums (reduced over the quad) and store bf16.
#pragma unroll
	for (int r = 0; r < 2; r++) {
		lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
		lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
		lrow[r] = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
	}
	bf16* oh = o + head * TC_D;
#pragma unroll
	for (int j = 0; j < 16; j++) {
		int col = j * 8 + t4 * 2;
		if (qa < lq)
			*reinterpret_cast<unsigned*>(oh + (long)qa * ldq + col) = tc_pack(oacc[j][0] * lrow[0], oacc[j][1] * lrow[0]);
		if (qb < lq)
			*reinterpret_cast<unsigned*>(oh + (long)qb * ldq + col) = tc_pack(oacc[j][2] * lrow[1], oacc[j][3] * lrow[1]);
	}
}

#endif  // ZK_HOST_SHIM
