// A stand-in for the CUDA runtime, so that the kernels of csrc/cuda compile as
// ordinary C++ and run on the CPU through their own launch code
// (scripts/cuda_host_check.sh). It is found before any real cuda_runtime.h:
// this directory comes first on the include path of that build only.
//
// What it models, and how:
// - a launch runs the grid's blocks one after another; the threads of a block
//   are fibers (ucontext) on one OS thread, each with its own threadIdx;
// - __syncthreads() is a real barrier: a fiber stops there until every
//   thread of its block has reached it (or exited), and the block's fibers
//   then resume in a new random order (seeded, CUDA_HOST_SEED), so that code
//   relying on an order the hardware does not promise, or missing a barrier,
//   reads stale or unwritten shared memory and fails;
// - __shared__ variables are one static object per kernel instantiation,
//   shared by the threads of the running block;
// - 16-byte Pack loads and stores are the C++ code as written: alignas(16)
//   types, which the compiler may move with aligned instructions.
// What it does not model: warps and their lock-step, memory ordering between
// threads, the device's math library (the element math runs its host
// branches: docs/gpu.md says where the device's intrinsics differ).
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>

#define DDPM_CUDA_HOST_EMULATION 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};
using cudaStream_t = struct CUstream_st*;
enum cudaError_t { cudaSuccess = 0 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
// As many blocks per SM as the kernels' fallback assumes (a real GPU says
// what its registers allow): a launch on `num_sms` SMs gets 8 * num_sms blocks.
template <typename Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel, int, size_t) {
  *blocks = 8;
  return cudaSuccess;
}

namespace cuda_host {

extern uint3 thread_idx;
extern uint3 block_idx;
extern dim3 block_dim;
extern dim3 grid_dim;

void syncthreads();

// Runs body once per thread of a grid of `grid` blocks of `block` threads.
void run_grid(unsigned grid, unsigned block, void (*body)(void*), void* context);

// Statistics of the launches since the last reset (for the tests).
struct LaunchStats {
  int64_t launches = 0;
  int64_t blocks = 0;
  int64_t barriers = 0;  // __syncthreads reached by a whole block
  unsigned last_grid = 0;
};
LaunchStats& stats();

template <typename Kernel, typename... Args>
struct Launch {
  Kernel kernel;
  const std::tuple<Args...>* args;
  static void run(void* self) {
    const Launch& launch = *static_cast<const Launch*>(self);
    std::apply([&](const Args&... a) { launch.kernel(a...); }, *launch.args);
  }
};

// kernel<<<grid, block>>>(args...): each thread gets its own copy of the
// arguments, as kernel parameters are.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned block,
            const Args&... args) {
  const std::tuple<Args...> packed(args...);
  Launch<void (*)(Params...), Args...> launch{kernel, &packed};
  run_grid(grid, block, &Launch<void (*)(Params...), Args...>::run, &launch);
}

}  // namespace cuda_host

#define threadIdx (::cuda_host::thread_idx)
#define blockIdx (::cuda_host::block_idx)
#define blockDim (::cuda_host::block_dim)
#define gridDim (::cuda_host::grid_dim)

inline void __syncthreads() { ::cuda_host::syncthreads(); }

