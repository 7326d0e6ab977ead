// The block scheduler of the CUDA stand-in (cuda_runtime.h): each thread of a
// block is a fiber; __syncthreads() returns to the scheduler, which resumes
// the block's fibers, in a fresh random order, once none is left running.
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/parallel.h"
#include "cuda_runtime.h"

namespace cuda_host {

uint3 thread_idx{0, 0, 0};
uint3 block_idx{0, 0, 0};
dim3 block_dim{1, 1, 1};
dim3 grid_dim{1, 1, 1};

namespace {

constexpr size_t kStackBytes = 128 * 1024;

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  bool done = false;
};

struct Scheduler {
  ucontext_t main;
  std::vector<Fiber> fibers;
  int current = -1;
  void (*body)(void*) = nullptr;
  void* body_context = nullptr;
  std::mt19937_64 rng{[] {
    const char* seed = std::getenv("CUDA_HOST_SEED");
    return seed != nullptr ? std::strtoull(seed, nullptr, 10) : 20261129ull;
  }()};
  LaunchStats stats;
};

Scheduler& scheduler() {
  static Scheduler s;
  return s;
}

void fiber_main() {
  Scheduler& s = scheduler();
  s.body(s.body_context);
  s.fibers[s.current].done = true;
  // returns to s.main through uc_link
}

}  // namespace

LaunchStats& stats() { return scheduler().stats; }

void syncthreads() {
  Scheduler& s = scheduler();
  if (s.current < 0) {
    std::fprintf(stderr, "cuda_host: __syncthreads() outside a kernel\n");
    std::abort();
  }
  swapcontext(&s.fibers[s.current].context, &s.main);
}

void run_grid(unsigned grid, unsigned block, void (*body)(void*), void* context) {
  Scheduler& s = scheduler();
  if (s.current >= 0) {
    std::fprintf(stderr, "cuda_host: a launch inside a kernel\n");
    std::abort();
  }
  ++s.stats.launches;
  s.stats.last_grid = grid;
  grid_dim = {grid, 1, 1};
  block_dim = {block, 1, 1};
  s.body = body;
  s.body_context = context;
  if (s.fibers.size() < block) s.fibers.resize(block);
  std::vector<int> order(block);
  for (unsigned b = 0; b < grid; ++b) {
    ++s.stats.blocks;
    block_idx = {b, 0, 0};
    for (unsigned i = 0; i < block; ++i) {
      Fiber& f = s.fibers[i];
      if (!f.stack) f.stack.reset(new char[kStackBytes]);
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.get();
      f.context.uc_stack.ss_size = kStackBytes;
      f.context.uc_link = &s.main;
      makecontext(&f.context, &fiber_main, 0);
      f.done = false;
    }
    // Phases between barriers: every live fiber runs until it reaches the
    // barrier or exits; the barrier is complete when none runs any more
    // (exited threads count as arrived, as on Volta and later).
    for (;;) {
      order.clear();
      for (unsigned i = 0; i < block; ++i) {
        if (!s.fibers[i].done) order.push_back(static_cast<int>(i));
      }
      if (order.empty()) break;
      std::shuffle(order.begin(), order.end(), s.rng);
      for (int i : order) {
        s.current = i;
        thread_idx = {static_cast<unsigned>(i), 0, 0};
        swapcontext(&s.main, &s.fibers[i].context);
      }
      s.current = -1;
      const bool any_waiting = std::any_of(
          s.fibers.begin(), s.fibers.begin() + block, [](const Fiber& f) { return !f.done; });
      if (any_waiting) ++s.stats.barriers;
    }
  }
}

}  // namespace cuda_host

// The CPU kernels' threads (csrc/cpu/parallel.h), here one after another: the
// range cut into grain-sized pieces, so the kernels see chunk boundaries as in
// a parallel run.
namespace ddpm {
namespace cpu {

void run_chunks(int64_t begin, int64_t end, int64_t grain, Chunk chunk, const void* context) {
  const int64_t step = std::max<int64_t>(grain, 1);
  for (int64_t lo = begin; lo < end; lo += step) chunk(context, lo, std::min(end, lo + step));
}

}  // namespace cpu
}  // namespace ddpm
