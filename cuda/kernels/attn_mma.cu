// Fused flash attention on tensor cores (sm_80+): bf16 inputs, float32
// accumulation and softmax statistics, grouped-query heads and an optional
// causal mask. The PTX helpers (ldmatrix, mma.sync, cvt, cp.async) have host
// versions for the host shim that emulate the instructions' warp-level
// semantics (as documented in the PTX ISA) with warp exchanges, so go test
// runs the unchanged kernel bodies on the CPU; the PTX itself is checked by
// ptxas and the SASS check of the build, and runs only on a GPU.
//
// Common scheme: Q·Kᵀ with mma.m16n8k16 (fragments by ldmatrix from
// XOR-swizzled tiles, 16-byte chunks, so ldmatrix and the copies are
// conflict-free), online softmax in the exp2 domain, P taken straight from
// the S accumulators as the A operand of P·V. Tiles are copied with cp.async
// (sm_80) and overlapped FlashAttention-2 style: the V tile loads while S and
// the softmax are computed, the next K tile while P·V is.
//
// zk_tc_flash_attn_bf16_d128 (DiT, Qwen3): 4 warps, 64 query rows (16 per
// warp), 64-key tiles, Q/K/V tiles in 48 KiB of shared memory.
//
// zk_tc_flash_attn_bf16_d256/_d512 (VAE mid-block): a warp cannot hold a
// 16×512 float accumulator, so d is split into 128-dim slices. Block: two
// row groups of 16 query rows × d/128 slice warps (256 threads for d=512),
// 32-key tiles. A warp keeps its Q slice in registers, computes the partial
// scores of its slice, and the row group sums the partials through shared
// memory (same order in every warp, so the softmax statistics are identical
// and each warp updates only its slice of O). Shared memory: K and V tiles
// of 32×d bf16 plus the partial scores: 80 KiB for d=512 (fits the 99 KiB
// of sm_86/sm_89).
#include "common.cuh"

// Element offset of (row, col) in a swizzled [rows][D] bf16 tile: the 16-byte
// chunk index is XORed with row&7 within each group of 8 chunks.
template <int D>
__device__ __forceinline__ int tc_swz(int row, int col) {
	return row * D + ((((col >> 3) ^ (row & 7)) << 3) | (col & 7));
}

#ifndef ZK_HOST_SHIM

// tc_saddr is a shared-memory address as the PTX instructions take it.
typedef unsigned tc_saddr;

__device__ __forceinline__ tc_saddr tc_smem(const void* p) { return (tc_saddr)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void tc_ldsm_x4(tc_saddr addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
	             : "r"(addr));
}

__device__ __forceinline__ void tc_ldsm_x4_t(tc_saddr addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
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

// 16-byte asynchronous copy global → shared; bytes < 16 zero-fills the rest
// (0: the whole chunk, for rows past the end).
__device__ __forceinline__ void tc_cp16(void* dst, const void* src, int bytes) {
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(tc_smem(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void tc_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of the most recently committed copy groups are
// still in flight.
template <int N>
__device__ __forceinline__ void tc_cp_wait() {
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#else  // ZK_HOST_SHIM: the same helpers emulated on the host shim's fibers.

typedef const unsigned char* tc_saddr;

inline tc_saddr tc_smem(const void* p) { return static_cast<tc_saddr>(p); }

// ldmatrix .x4: lanes 8i..8i+7 give the row addresses of 8×8 matrix i; lane
// t receives in register i the elements (row t/4, cols 2(t%4), 2(t%4)+1) of
// matrix i, or with .trans (rows 2(t%4), 2(t%4)+1, col t/4); the lower
// column (row) sits in the low half.
inline void tc_ldsm_emul(tc_saddr addr, unsigned* r, bool trans) {
	tc_saddr all[32];
	zk_warp_exchange(&addr, all, sizeof addr);
	int t = zk_lane();
	for (int i = 0; i < 4; i++) {
		unsigned short lo, hi;
		if (!trans) {
			const unsigned short* row = reinterpret_cast<const unsigned short*>(all[8 * i + t / 4]);
			lo = row[2 * (t % 4)];
			hi = row[2 * (t % 4) + 1];
		} else {
			lo = reinterpret_cast<const unsigned short*>(all[8 * i + 2 * (t % 4)])[t / 4];
			hi = reinterpret_cast<const unsigned short*>(all[8 * i + 2 * (t % 4) + 1])[t / 4];
		}
		r[i] = lo | (unsigned)hi << 16;
	}
}
inline void tc_ldsm_x4(tc_saddr addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
	unsigned r[4];
	tc_ldsm_emul(addr, r, false);
	r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
}
inline void tc_ldsm_x4_t(tc_saddr addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
	unsigned r[4];
	tc_ldsm_emul(addr, r, true);
	r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
}

// mma.m16n8k16.row.col bf16 → f32 over the warp's fragments: A (16×16) row
// g, g+8 and cols 2t4(+1), 2t4+8(+9) in a0..a3 of lane 4g+t4; B (16×8) rows
// 2t4(+1), 2t4+8(+9) and col g in b0, b1; C rows g, g+8, cols 2t4(+1).
inline void tc_mma(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1) {
	struct Frag {
		unsigned a[4], b[2];
	} mine = {{a0, a1, a2, a3}, {b0, b1}}, all[32];
	zk_warp_exchange(&mine, all, sizeof mine);
	auto half = [](unsigned w, int hi) { return bf2f(bf16{(unsigned short)(hi ? w >> 16 : w & 0xffffu)}); };
	auto A = [&](int row, int k) {
		return half(all[(row & 7) * 4 + ((k & 7) >> 1)].a[(row >> 3) + 2 * (k >> 3)], k & 1);
	};
	auto B = [&](int k, int n) { return half(all[n * 4 + ((k & 7) >> 1)].b[k >> 3], k & 1); };
	int t = zk_lane(), g = t >> 2, t4 = t & 3;
	for (int e = 0; e < 4; e++) {
		int row = g + (e >> 1) * 8, col = 2 * t4 + (e & 1);
		float acc = c[e];
		for (int k = 0; k < 16; k++) acc += A(row, k) * B(k, col);
		c[e] = acc;
	}
}

inline unsigned tc_pack(float lo, float hi) { return f2bf(lo).x | (unsigned)f2bf(hi).x << 16; }

// cp.async through the shim (eager or deferred; see hostshim.h).
inline void tc_cp16(void* dst, const void* src, int bytes) { zk_cp_async(dst, src, bytes); }
inline void tc_cp_commit() { zk_cp_commit(); }
template <int N>
inline void tc_cp_wait() {
	zk_cp_wait(N);
}

#endif  // ZK_HOST_SHIM

// Starts copying rows [r0, r0+rows) of a [n][ld] bf16 matrix (D columns from
// g) into a swizzled tile; rows past n become zeros.
template <int D>
__device__ __forceinline__ void tc_load_async(bf16* tile, const bf16* __restrict__ g, int r0, int rows, int n,
                                              long ld) {
	constexpr int CH = D / 8;  // 16-byte chunks per row
	for (int c = threadIdx.x; c < rows * CH; c += blockDim.x) {
		int row = c / CH, ch = c % CH;
		bool in = r0 + row < n;
		const bf16* src = in ? g + (long)(r0 + row) * ld + ch * 8 : g;
		tc_cp16(tile + tc_swz<D>(row, ch * 8), src, in ? 16 : 0);
	}
}

// Masks, scales and folds one tile of scores s[NT][4] (NT n-tiles of 8 keys
// from k0; s[j][0..1] row qa, keys k0+8j+2t4+{0,1}; s[j][2..3] row qb) into
// the running max mrow and sum lrow, leaving P (unnormalised) in s and the
// factor that rescales the O accumulator in alpha.
template <int NT>
__device__ __forceinline__ void tc_softmax_tile(float (&s)[NT][4], float (&mrow)[2], float (&lrow)[2],
                                                float (&alpha)[2], int k0, int lk, int qa, int qb, int causal,
                                                float sl2, int t4) {
	float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
	for (int j = 0; j < NT; j++) {
#pragma unroll
		for (int e = 0; e < 4; e++) {
			int key = k0 + j * 8 + t4 * 2 + (e & 1);
			int qi = (e < 2) ? qa : qb;
			bool ok = key < lk && !(causal && key > qi);
			s[j][e] = ok ? s[j][e] * sl2 : -INFINITY;
			mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
		}
	}
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
	for (int j = 0; j < NT; j++) {
		s[j][0] = exp2f(s[j][0] - mx[0]);
		s[j][1] = exp2f(s[j][1] - mx[0]);
		s[j][2] = exp2f(s[j][2] - mx[1]);
		s[j][3] = exp2f(s[j][3] - mx[1]);
		lrow[0] += s[j][0] + s[j][1];
		lrow[1] += s[j][2] + s[j][3];
	}
}

// Normalises the 16 accumulator tiles (128 dims from col0) by the row sums
// and stores rows qa, qb of o (row stride ld) as bf16.
__device__ __forceinline__ void tc_store_rows(bf16* __restrict__ o, long ld, int col0, float (&oacc)[16][4],
                                              float (&lrow)[2], int qa, int qb, int lq, int t4) {
#pragma unroll
	for (int r = 0; r < 2; r++) {
		lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
		lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
		lrow[r] = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
	}
#pragma unroll
	for (int j = 0; j < 16; j++) {
		int col = col0 + j * 8 + t4 * 2;
		if (qa < lq)
			*reinterpret_cast<unsigned*>(o + (long)qa * ld + col) = tc_pack(oacc[j][0] * lrow[0], oacc[j][1] * lrow[0]);
		if (qb < lq)
			*reinterpret_cast<unsigned*>(o + (long)qb * ld + col) = tc_pack(oacc[j][2] * lrow[1], oacc[j][3] * lrow[1]);
	}
}

#define TC_BQ 64  // d=128: query rows per block
#define TC_BK 64  // d=128: keys per tile

// q [lq, heads*128], k and v [lk, kv_heads*128], o like q. Grid (ceil(lq/64),
// heads), block 128, dynamic shared memory 3·64·128·2 = 48 KiB.
extern "C" __global__ void __launch_bounds__(128)
    zk_tc_flash_attn_bf16_d128(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                               bf16* __restrict__ o, int lq, int lk, int heads, int kv_heads, float scale,
                               int causal) {
	constexpr int D = 128;
	ZK_DYN_SMEM(bf16, smem);
	bf16* sq = smem;
	bf16* sk = smem + TC_BQ * D;
	bf16* sv = smem + 2 * TC_BQ * D;

	const int head = blockIdx.y, kvh = head / (heads / kv_heads);
	const int q0 = blockIdx.x * TC_BQ;
	const long ldq = (long)heads * D, ldk = (long)kv_heads * D;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const float sl2 = scale * 1.4426950408889634f;  // scores in the exp2 domain
	const bf16* kh = k + kvh * D;
	const bf16* vh = v + kvh * D;
	const int kend = causal ? min(lk, q0 + TC_BQ) : lk;

	tc_load_async<D>(sq, q + head * D, q0, TC_BQ, lq, ldq);
	tc_load_async<D>(sk, kh, 0, TC_BK, lk, ldk);
	tc_cp_commit();

	float oacc[16][4];
#pragma unroll
	for (int j = 0; j < 16; j++) oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.f;
	float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

	// Query rows of this thread: qa (fragment rows g) and qb (g + 8).
	const int qa = q0 + warp * 16 + g, qb = qa + 8;

	for (int k0 = 0; k0 < kend; k0 += TC_BK) {
		tc_cp_wait<0>();
		__syncthreads();  // K tile (and Q) landed; every warp is done with the previous V tile
		tc_load_async<D>(sv, vh, k0, TC_BK, lk, ldk);
		tc_cp_commit();

		// S[16 rows, 64 keys] = Q_w · K_tileᵀ, while V loads
		float s[8][4];
#pragma unroll
		for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < D; kk += 16) {
			unsigned a0, a1, a2, a3;
			{
				int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = kk + (lane >> 4) * 8;
				tc_ldsm_x4(tc_smem(sq + tc_swz<D>(row, col)), a0, a1, a2, a3);
			}
#pragma unroll
			for (int n = 0; n < 8; n += 2) {
				unsigned b0, b1, b2, b3;
				int key = n * 8 + (lane & 7) + (lane >> 4) * 8, col = kk + ((lane >> 3) & 1) * 8;
				tc_ldsm_x4(tc_smem(sk + tc_swz<D>(key, col)), b0, b1, b2, b3);
				tc_mma(s[n], a0, a1, a2, a3, b0, b1);
				tc_mma(s[n + 1], a0, a1, a2, a3, b2, b3);
			}
		}

		float alpha[2];
		tc_softmax_tile<8>(s, mrow, lrow, alpha, k0, lk, qa, qb, causal, sl2, t4);
#pragma unroll
		for (int j = 0; j < 16; j++) {
			oacc[j][0] *= alpha[0];
			oacc[j][1] *= alpha[0];
			oacc[j][2] *= alpha[1];
			oacc[j][3] *= alpha[1];
		}

		tc_cp_wait<0>();
		__syncthreads();  // V tile landed; every warp is done with the K tile
		if (k0 + TC_BK < kend) {
			tc_load_async<D>(sk, kh, k0 + TC_BK, TC_BK, lk, ldk);
			tc_cp_commit();
		}

		// O[16, 128] += P[16, 64] · V_tile[64, 128], while the next K loads
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
				tc_ldsm_x4_t(tc_smem(sv + tc_swz<D>(key, col)), b0, b1, b2, b3);
				tc_mma(oacc[n], a0, a1, a2, a3, b0, b1);
				tc_mma(oacc[n + 1], a0, a1, a2, a3, b2, b3);
			}
		}
	}

	tc_store_rows(o + head * D, ldq, 0, oacc, lrow, qa, qb, lq, t4);
}

#define TS_BQ 32  // split-d: query rows per block (two row groups of 16)
#define TS_BK 32  // split-d: keys per tile

// Split-d kernel for head size D (256 or 512): see the top of the file.
template <int D>
__device__ __forceinline__ void tc_flash_split(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                               const bf16* __restrict__ v, bf16* __restrict__ o, int lq, int lk,
                                               int heads, int kv_heads, float scale, int causal) {
	constexpr int SL = D / 128;  // slices = warps per row group
	ZK_DYN_SMEM(bf16, smem);
	bf16* sk = smem;               // [32][D], swizzled
	bf16* sv = smem + TS_BK * D;   // [32][D], swizzled; holds Q before the first V tile
	// Partial scores [row group][slice][n-tile][lane], in the accumulator
	// layout (every lane reads back exactly the elements it holds).
	float4* sp = reinterpret_cast<float4*>(smem + 2 * TS_BK * D);

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int rg = warp / SL, sl = warp % SL;
	const int g = lane >> 2, t4 = lane & 3;
	const int head = blockIdx.y, kvh = head / (heads / kv_heads);
	const int q0 = blockIdx.x * TS_BQ;
	const long ldq = (long)heads * D, ldk = (long)kv_heads * D;
	const float sl2 = scale * 1.4426950408889634f;
	const bf16* kh = k + kvh * D;
	const bf16* vh = v + kvh * D;
	const int kend = causal ? min(lk, q0 + TS_BQ) : lk;
	const int col0 = sl * 128;  // this warp's dims

	tc_load_async<D>(sv, q + head * D, q0, TS_BQ, lq, ldq);
	tc_cp_commit();
	tc_load_async<D>(sk, kh, 0, TS_BK, lk, ldk);
	tc_cp_commit();
	tc_cp_wait<1>();
	__syncthreads();  // Q landed

	// The warp's Q slice as A fragments: 16 rows × 128 dims, 8 k-steps.
	unsigned qf[8][4];
#pragma unroll
	for (int kk = 0; kk < 8; kk++) {
		int row = rg * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = col0 + kk * 16 + (lane >> 4) * 8;
		tc_ldsm_x4(tc_smem(sv + tc_swz<D>(row, col)), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
	}

	float oacc[16][4];
#pragma unroll
	for (int j = 0; j < 16; j++) oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.f;
	float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
	const int qa = q0 + rg * 16 + g, qb = qa + 8;

	for (int k0 = 0; k0 < kend; k0 += TS_BK) {
		tc_cp_wait<0>();
		__syncthreads();  // K tile landed; every warp is done with sv (Q fragments or the previous V)
		tc_load_async<D>(sv, vh, k0, TS_BK, lk, ldk);
		tc_cp_commit();

		// Partial S[16 rows, 32 keys] over this warp's 128 dims, while V loads.
		float s[4][4];
#pragma unroll
		for (int j = 0; j < 4; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < 8; kk++) {
#pragma unroll
			for (int n = 0; n < 4; n += 2) {
				unsigned b0, b1, b2, b3;
				int key = n * 8 + (lane & 7) + (lane >> 4) * 8, col = col0 + kk * 16 + ((lane >> 3) & 1) * 8;
				tc_ldsm_x4(tc_smem(sk + tc_swz<D>(key, col)), b0, b1, b2, b3);
				tc_mma(s[n], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
				tc_mma(s[n + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b2, b3);
			}
		}
#pragma unroll
		for (int n = 0; n < 4; n++) sp[((rg * SL + sl) * 4 + n) * 32 + lane] = make_float4(s[n][0], s[n][1], s[n][2], s[n][3]);
		__syncthreads();  // partial scores visible; every warp is done with the K tile
		if (k0 + TS_BK < kend) {
			tc_load_async<D>(sk, kh, k0 + TS_BK, TS_BK, lk, ldk);
			tc_cp_commit();
		}

		// Full scores: the row group's partials summed in slice order.
#pragma unroll
		for (int n = 0; n < 4; n++) {
			float4 t = sp[((rg * SL) * 4 + n) * 32 + lane];
#pragma unroll
			for (int c = 1; c < SL; c++) {
				float4 u = sp[((rg * SL + c) * 4 + n) * 32 + lane];
				t.x += u.x;
				t.y += u.y;
				t.z += u.z;
				t.w += u.w;
			}
			s[n][0] = t.x;
			s[n][1] = t.y;
			s[n][2] = t.z;
			s[n][3] = t.w;
		}
		float alpha[2];
		tc_softmax_tile<4>(s, mrow, lrow, alpha, k0, lk, qa, qb, causal, sl2, t4);
#pragma unroll
		for (int j = 0; j < 16; j++) {
			oacc[j][0] *= alpha[0];
			oacc[j][1] *= alpha[0];
			oacc[j][2] *= alpha[1];
			oacc[j][3] *= alpha[1];
		}

		if (k0 + TS_BK < kend)
			tc_cp_wait<1>();  // the next K tile may stay in flight
		else
			tc_cp_wait<0>();
		__syncthreads();  // V tile landed

		// O[16, slice] += P[16, 32] · V_tile[32, slice], while the next K loads
#pragma unroll
		for (int kb = 0; kb < 2; kb++) {
			unsigned a0 = tc_pack(s[2 * kb][0], s[2 * kb][1]);
			unsigned a1 = tc_pack(s[2 * kb][2], s[2 * kb][3]);
			unsigned a2 = tc_pack(s[2 * kb + 1][0], s[2 * kb + 1][1]);
			unsigned a3 = tc_pack(s[2 * kb + 1][2], s[2 * kb + 1][3]);
#pragma unroll
			for (int n = 0; n < 16; n += 2) {
				unsigned b0, b1, b2, b3;
				int key = kb * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = col0 + n * 8 + (lane >> 4) * 8;
				tc_ldsm_x4_t(tc_smem(sv + tc_swz<D>(key, col)), b0, b1, b2, b3);
				tc_mma(oacc[n], a0, a1, a2, a3, b0, b1);
				tc_mma(oacc[n + 1], a0, a1, a2, a3, b2, b3);
			}
		}
	}

	tc_store_rows(o + head * D, ldq, col0, oacc, lrow, qa, qb, lq, t4);
}

// q [lq, heads*D], k and v [lk, kv_heads*D], o like q. Grid (ceil(lq/32),
// heads), block 64·D/128, dynamic shared memory 2·32·D·2 + (D/128)·2·16·32·4
// bytes (80 KiB for D=512: needs the opt-in attribute).
#define ZK_TC_SPLIT(D)                                                                                       \
	extern "C" __global__ void __launch_bounds__(64 * (D / 128)) zk_tc_flash_attn_bf16_d##D(                 \
	    const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v, bf16* __restrict__ o, \
	    int lq, int lk, int heads, int kv_heads, float scale, int causal) {                                    \
		tc_flash_split<D>(q, k, v, o, lq, lk, heads, kv_heads, scale, causal);                               \
	}
ZK_TC_SPLIT(256)
ZK_TC_SPLIT(512)
