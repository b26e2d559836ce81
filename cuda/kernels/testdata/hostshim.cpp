// Host shim runtime: launches a kernel thunk over a grid on CPU threads.
// See hostshim.h. Compiled together with the kernels into a shared object by
// cuda/internal/hostshim at test time.
#include "hostshim.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
thread_local unsigned char* zk_dyn_smem_ptr;

namespace {
struct Warp {
	std::barrier<> bar{32};
	uint64_t buf[32];
};
struct Block {
	std::barrier<> bar;
	std::vector<std::unique_ptr<Warp>> warps;
	explicit Block(int n) : bar(n) {
		for (int i = 0; i < (n + 31) / 32; i++) warps.emplace_back(new Warp);
	}
};
thread_local Block* cur_block;
thread_local int cur_tid;
}  // namespace

void zk_syncthreads() { cur_block->bar.arrive_and_wait(); }

void zk_syncwarp() { cur_block->warps[cur_tid / 32]->bar.arrive_and_wait(); }

uint64_t zk_shfl_xor(uint64_t v, int mask) {
	Warp* w = cur_block->warps[cur_tid / 32].get();
	int lane = cur_tid % 32;
	w->buf[lane] = v;
	w->bar.arrive_and_wait();
	uint64_t r = w->buf[(lane ^ mask) & 31];
	w->bar.arrive_and_wait();
	return r;
}

// zk_launch runs thunk(params) for every thread of every block. Threads of a
// block run concurrently (one OS thread each, reused across blocks); blocks
// run in order. Returns 0, or 1 for an invalid configuration.
extern "C" int zk_launch(void (*thunk)(void**), unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                         unsigned by, unsigned bz, unsigned smem, void** params) {
	unsigned nt = bx * by * bz;
	if (nt == 0 || nt > 1024 || gx == 0 || gy == 0 || gz == 0) return 1;
	if ((nt % 32) != 0 && nt != 1) {
		// Shuffles need full warps; kernels here always use multiples of 32.
	}
	Block blk(nt);
	std::vector<unsigned char> dyn(smem + 16);
	unsigned char* dynp = dyn.data() + (16 - (reinterpret_cast<uintptr_t>(dyn.data()) & 15)) % 16;
	std::vector<std::thread> ts;
	ts.reserve(nt);
	for (unsigned t = 0; t < nt; t++) {
		ts.emplace_back([=, &blk] {
			cur_block = &blk;
			cur_tid = (int)t;
			zk_dyn_smem_ptr = dynp;
			blockDim = dim3{bx, by, bz};
			gridDim = dim3{gx, gy, gz};
			threadIdx = dim3{t % bx, (t / bx) % by, t / (bx * by)};
			for (unsigned z = 0; z < gz; z++)
				for (unsigned y = 0; y < gy; y++)
					for (unsigned x = 0; x < gx; x++) {
						blockIdx = dim3{x, y, z};
						thunk(params);
						blk.bar.arrive_and_wait();  // the block is done before the next reuses shared memory
					}
		});
	}
	for (auto& th : ts) th.join();
	return 0;
}

// zk_invoke unpacks a cuLaunchKernel-style parameter array into a call.
template <typename... A, size_t... I>
static void zk_invoke_impl(void (*f)(A...), void** p, std::index_sequence<I...>) {
	f(*static_cast<std::remove_reference_t<A>*>(p[I])...);
}
template <typename... A>
static void zk_invoke(void (*f)(A...), void** p) {
	zk_invoke_impl(f, p, std::index_sequence_for<A...>{});
}
