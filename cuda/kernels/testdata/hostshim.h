// Host shim: lets the CUDA kernels in cuda/kernels compile with g++ (C++20)
// and run on the CPU. Each CUDA thread of a block is a fiber on
// the calling OS thread; blocks run one after another. A fiber runs until it
// reaches __syncthreads or a warp shuffle, where it yields to a scheduler that
// releases the barrier once every thread of the block (or warp) has arrived.
// Inline PTX cannot run here: kernels keep it in small helpers with host
// versions (see attn_mma.cu, which emulates ldmatrix, mma.sync and cp.async
// on top of zk_warp_exchange).
// Used by go test (cuda/internal/hostshim), never shipped.
#pragma once
#define ZK_HOST_SHIM 1
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <vector>

struct dim3 {
	unsigned x = 1, y = 1, z = 1;
};
extern dim3 threadIdx, blockIdx, blockDim, gridDim;
extern unsigned char* zk_dyn_smem_ptr;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Shared memory is per block; blocks run one at a time, so a function-local
// static is shared by the block's threads.
#define __shared__ static
#define ZK_DYN_SMEM(T, name) T* name = reinterpret_cast<T*>(zk_dyn_smem_ptr)

void zk_syncthreads();
void zk_syncwarp();
// zk_lane returns the calling thread's lane (linear thread index mod 32).
int zk_lane();
// zk_warp_exchange gathers bytes (≤ 64) from every lane of the caller's warp
// into all[32·bytes], lane order (the tensor-core emulation's collective).
void zk_warp_exchange(const void* mine, void* all, int bytes);
// Asynchronous copies (cp.async): 16 bytes, the first bytes from src, the
// rest zeros. In eager mode a copy lands at once; in deferred mode it lands
// when the issuing thread waits for its group (zk_cp_wait), the latest a GPU
// may complete it, so a consumer that skips the wait or the barrier after it
// reads stale (poisoned) shared memory.
void zk_cp_async(void* dst, const void* src, int bytes);
void zk_cp_commit();
void zk_cp_wait(int pending);
uint64_t zk_shfl_xor(uint64_t v, int mask);
// zk_warp_butterfly returns lane's result of the xor-shuffle reduction
// (offsets 16, 8, 4, 2, 1) of v over the warp: sum, or max when max is set.
float zk_warp_butterfly(float v, bool max);
#define __syncthreads() zk_syncthreads()
#define __syncwarp(...) zk_syncwarp()

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask) {
	static_assert(sizeof(T) <= 8);
	uint64_t u = 0;
	std::memcpy(&u, &v, sizeof(T));
	u = zk_shfl_xor(u, mask);
	T r;
	std::memcpy(&r, &u, sizeof(T));
	return r;
}

struct float4 {
	float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
using std::max;
using std::min;
