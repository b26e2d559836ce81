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

struct Fiber {
	void* sp;
	dim3 tid;
	State state;
	std::vector<char> stack;
};

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

// run_block runs every fiber of the block to completion, releasing barriers
// when all live threads of the block (or of a warp) have reached them.
// Returns false on a deadlock (threads waiting at different barriers).
bool run_block() {
	int n = (int)fibers.size();
	for (auto& f : fibers) {
		fiber_init(f);
		f.state = Ready;
	}
	for (;;) {
		bool ran = false;
		for (auto& f : fibers) {
			if (f.state != Ready) continue;
			cur = &f;
			threadIdx = f.tid;
			zk_switch(&sched_sp, f.sp);
			ran = true;
		}
		// Release complete warps first, then the block barrier.
		bool done = true, released = false;
		for (int w = 0; w < n; w += 32) {
			int end = std::min(n, w + 32), at = 0, live = 0;
			for (int i = w; i < end; i++) {
				if (fibers[i].state != Done) live++;
				if (fibers[i].state == AtWarpBarrier) at++;
			}
			if (live > 0 && at == live) {
				for (int i = w; i < end; i++)
					if (fibers[i].state == AtWarpBarrier) fibers[i].state = Ready;
				released = true;
			}
		}
		if (released) continue;
		int at = 0, live = 0;
		for (auto& f : fibers) {
			if (f.state != Done) live++, done = false;
			if (f.state == AtBlockBarrier) at++;
		}
		if (done) return true;
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
