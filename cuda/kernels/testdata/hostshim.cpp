// Host shim runtime: runs a kernel thunk over a grid with one fiber per CUDA
// thread (hand-written stack switch on amd64 and arm64). See hostshim.h. Compiled together with the kernels into a shared
// object by cuda/internal/hostshim at test time.
#include "hostshim.h"

#include <cstdio>
#include <utility>

// A fiber switch saves the callee-saved registers on the current stack and
// swaps stack pointers (no signal-mask syscall, unlike swapcontext).
#if defined(__x86_64__)
extern "C" void zk_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl zk_switch
.type zk_switch,@function
zk_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
.size zk_switch, .-zk_switch
)");
#elif defined(__aarch64__)
extern "C" void zk_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl zk_switch
.type zk_switch,%function
zk_switch:
	sub sp, sp, #176
	stp x19, x20, [sp, #0]
	stp x21, x22, [sp, #16]
	stp x23, x24, [sp, #32]
	stp x25, x26, [sp, #48]
	stp x27, x28, [sp, #64]
	stp x29, x30, [sp, #80]
	stp d8, d9, [sp, #96]
	stp d10, d11, [sp, #112]
	stp d12, d13, [sp, #128]
	stp d14, d15, [sp, #144]
	mov x9, sp
	str x9, [x0]
	mov sp, x1
	ldp x19, x20, [sp, #0]
	ldp x21, x22, [sp, #16]
	ldp x23, x24, [sp, #32]
	ldp x25, x26, [sp, #48]
	ldp x27, x28, [sp, #64]
	ldp x29, x30, [sp, #80]
	ldp d8, d9, [sp, #96]
	ldp d10, d11, [sp, #112]
	ldp d12, d13, [sp, #128]
	ldp d14, d15, [sp, #144]
	add sp, sp, #176
	ret
.size zk_switch, .-zk_switch
)");
#else
#error "hostshim: fiber switch not implemented for this architecture"
#endif

dim3 threadIdx, blockIdx, blockDim, gridDim;
unsigned char* zk_dyn_smem_ptr;

namespace {
enum State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct PendingCopy {
	void* dst;
	unsigned char data[16];
	int group;
};

struct Fiber {
	void* sp;
	dim3 tid;
	State state;
	std::vector<char> stack;
	std::vector<PendingCopy> copies;  // deferred cp.async copies
	int commits;                      // cp.async groups committed so far
};

int cp_deferred;  // zk_set_async_copy_mode

constexpr size_t kStack = 64 << 10;
void* sched_sp;
std::vector<Fiber> fibers;
Fiber* cur;
void (*cur_thunk)(void**);
void** cur_params;
uint64_t warp_buf[1024];

[[noreturn]] void fiber_main() {
	cur_thunk(cur_params);
	cur->state = Done;
	zk_switch(&cur->sp, sched_sp);  // never resumed
	__builtin_unreachable();
}

// fiber_init prepares f's stack so that the first switch to it "returns"
// into fiber_main with the stack aligned as after a call.
void fiber_init(Fiber& f) {
	uintptr_t top = reinterpret_cast<uintptr_t>(f.stack.data() + f.stack.size()) & ~uintptr_t(15);
	void** sp = reinterpret_cast<void**>(top);
#if defined(__x86_64__)
	*--sp = nullptr;                                 // fake return address of fiber_main (alignment)
	*--sp = reinterpret_cast<void*>(&fiber_main);    // popped by ret
	for (int i = 0; i < 6; i++) *--sp = nullptr;     // rbp rbx r12-r15
#else
	sp -= 22;                                        // 176-byte frame: x19..x30 (x30 = lr), d8..d15
	for (int i = 0; i < 22; i++) sp[i] = nullptr;
	sp[11] = reinterpret_cast<void*>(&fiber_main);   // x30 at offset 88
#endif
	f.sp = sp;
}

void yield(State s) {
	cur->state = s;
	zk_switch(&cur->sp, sched_sp);
	threadIdx = cur->tid;
}

// sched selects the order fibers run in (zk_set_schedule): 0 lockstep
// (every ready fiber one step per round, warps in order), 1 warp-first (each
// warp, first to last, runs until it waits at a block barrier or ends before
// the next starts), 2 warp-last (the same, last warp first). The greedy
// orders let one warp run ahead, so a kernel that overwrites shared memory
// another warp still needs (a missing barrier) computes wrong results.
int sched;

// release_warp makes the fibers of warp w ready when every live one waits at
// the warp barrier.
bool release_warp(int w) {
	int n = (int)fibers.size(), end = std::min(n, 32 * w + 32), at = 0, live = 0;
	for (int i = 32 * w; i < end; i++) {
		if (fibers[i].state != Done) live++;
		if (fibers[i].state == AtWarpBarrier) at++;
	}
	if (live == 0 || at != live) return false;
	for (int i = 32 * w; i < end; i++)
		if (fibers[i].state == AtWarpBarrier) fibers[i].state = Ready;
	return true;
}

// run_block runs every fiber of the block to completion, releasing barriers
// when all live threads of the block (or of a warp) have reached them.
// Returns false on a deadlock (threads waiting at different barriers).
bool run_block() {
	int n = (int)fibers.size(), nw = (n + 31) / 32;
	for (auto& f : fibers) {
		fiber_init(f);
		f.state = Ready;
		f.copies.clear();
		f.commits = 0;
	}
	for (;;) {
		bool ran = false, released = false;
		for (int wi = 0; wi < nw; wi++) {
			int w = sched == 2 ? nw - 1 - wi : wi;
			for (;;) {
				bool any = false;
				for (int i = 32 * w; i < std::min(n, 32 * w + 32); i++) {
					Fiber& f = fibers[i];
					if (f.state != Ready) continue;
					cur = &f;
					threadIdx = f.tid;
					zk_switch(&sched_sp, f.sp);
					any = true;
				}
				bool rel = release_warp(w);
				ran |= any;
				released |= rel;
				if (sched == 0 || !(any || rel)) break;
			}
		}
		if (released) continue;
		int at = 0, live = 0;
		for (auto& f : fibers) {
			if (f.state != Done) live++;
			if (f.state == AtBlockBarrier) at++;
		}
		if (live == 0) return true;
		if (at == live) {
			for (auto& f : fibers) f.state = Ready;
			continue;
		}
		if (!ran) return false;
	}
}
}  // namespace

void zk_syncthreads() { yield(AtBlockBarrier); }

void zk_syncwarp() { yield(AtWarpBarrier); }

uint64_t zk_shfl_xor(uint64_t v, int mask) {
	int t = (int)(cur - fibers.data());
	warp_buf[t] = v;
	yield(AtWarpBarrier);
	int lane = t & 31;
	uint64_t r = warp_buf[(t & ~31) | ((lane ^ mask) & 31)];
	yield(AtWarpBarrier);
	return r;
}

int zk_lane() { return (int)(cur - fibers.data()) & 31; }

namespace {
unsigned char xchg_buf[1024][64];
}

void zk_warp_exchange(const void* mine, void* all, int bytes) {
	int t = (int)(cur - fibers.data()), base = t & ~31;
	std::memcpy(xchg_buf[t], mine, bytes);
	yield(AtWarpBarrier);
	for (int i = 0; i < 32; i++) std::memcpy(static_cast<unsigned char*>(all) + i * bytes, xchg_buf[base + i], bytes);
	yield(AtWarpBarrier);
}

void zk_cp_async(void* dst, const void* src, int bytes) {
	PendingCopy c{dst, {}, cur->commits};
	std::memcpy(c.data, src, bytes);
	if (!cp_deferred) {
		std::memcpy(dst, c.data, 16);
		return;
	}
	cur->copies.push_back(c);
}

void zk_cp_commit() { cur->commits++; }

void zk_cp_wait(int pending) {
	auto& cs = cur->copies;
	size_t keep = 0;
	for (size_t i = 0; i < cs.size(); i++) {
		if (cs[i].group < cur->commits - pending)
			std::memcpy(cs[i].dst, cs[i].data, 16);
		else
			cs[keep++] = cs[i];
	}
	cs.resize(keep);
}

// zk_set_async_copy_mode selects eager (0) or deferred (1) cp.async copies.
extern "C" void zk_set_async_copy_mode(int deferred) { cp_deferred = deferred; }

// zk_set_schedule selects the fiber order (see sched).
extern "C" void zk_set_schedule(int mode) { sched = mode; }

float zk_warp_butterfly(float v, bool mx) {
	int t = (int)(cur - fibers.data()), base = t & ~31, lane = t & 31;
	uint64_t u = 0;
	std::memcpy(&u, &v, 4);
	warp_buf[t] = u;
	yield(AtWarpBarrier);
	float x[32], y[32];
	for (int i = 0; i < 32; i++) std::memcpy(&x[i], &warp_buf[base + i], 4);
	for (int o = 16; o > 0; o >>= 1) {
		for (int i = 0; i < 32; i++) y[i] = mx ? fmaxf(x[i], x[i ^ o]) : x[i] + x[i ^ o];
		std::memcpy(x, y, sizeof x);
	}
	yield(AtWarpBarrier);
	return x[lane];
}

// zk_launch runs thunk(params) for every thread of every block. Returns 0, 1
// for an invalid configuration, 2 for a deadlock at barriers.
extern "C" int zk_launch(void (*thunk)(void**), unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                         unsigned by, unsigned bz, unsigned smem, void** params) {
	unsigned nt = bx * by * bz;
	if (nt == 0 || nt > 1024 || gx == 0 || gy == 0 || gz == 0) return 1;
	fibers.resize(nt);
	for (unsigned t = 0; t < nt; t++) {
		fibers[t].tid = dim3{t % bx, (t / bx) % by, t / (bx * by)};
		if (fibers[t].stack.size() != kStack) fibers[t].stack.resize(kStack);
	}
	std::vector<unsigned char> dyn(smem + 16);
	zk_dyn_smem_ptr = dyn.data() + (16 - (reinterpret_cast<uintptr_t>(dyn.data()) & 15)) % 16;
	blockDim = dim3{bx, by, bz};
	gridDim = dim3{gx, gy, gz};
	cur_thunk = thunk;
	cur_params = params;
	for (unsigned z = 0; z < gz; z++)
		for (unsigned y = 0; y < gy; y++)
			for (unsigned x = 0; x < gx; x++) {
				blockIdx = dim3{x, y, z};
				// Poison: a kernel must not read shared memory it did not write
				// (0xff bytes are NaN in float32 and bf16).
				std::memset(zk_dyn_smem_ptr, 0xff, smem);
				if (!run_block()) {
					fprintf(stderr, "hostshim: deadlock in block (%u,%u,%u)\n", x, y, z);
					return 2;
				}
			}
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
