// The CUDA loop shared by every operator (torch-free: CUDA runtime only).
//
// Data are [batch, sample_numel], flattened. Each block walks chunks of
// kThreads*VEC contiguous elements (grid-stride, 64-bit indices), so one
// launch with a grid of one wave of resident blocks covers any size. Each
// thread handles VEC consecutive elements of a chunk: with one 16-byte load
// and store per tensor when they lie in one sample and every pointer is
// 16-byte aligned, element by element otherwise. It takes its sample's
// coefficients from op.coef(b), with no barrier: what is costly to form is
// formed before the launch, once per sample (coef_prologue_kernel).
//
// An Op supplies:
//   using Coef = ...;                                // per-sample coefficients
//   static constexpr int kMinBlocksPerSm;            // its register budget (below)
//   __device__ Coef coef(int64_t b) const;          // cheap; NaN coefs for a bad t
//   __device__ bool aligned(int64_t b, int64_t i) const;  // every pointer at (b, i)
//   template <int V> __device__ void apply(const Coef&, int64_t b, int64_t i) const;
// for in-kernel noise (noise_kernel below),
//   __device__ void apply_noise(const Coef&, int64_t b, int64_t i, float noise) const;
// and, with a prologue, __device__ Coef form_coef(int64_t b) const.
//
// Register budgets: kMinBlocksPerSm blocks of kThreads must fit on an SM
// (__launch_bounds__), which caps a kernel at 65536 / (kThreads *
// kMinBlocksPerSm) registers per thread: 64 for 4 blocks, 40 for 6, 32 for 8.
// scripts/check_registers.py compiles the kernels for sm_90 and fails on any
// spill, so a change that needs more registers than its budget shows there.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "ddpm/kernels.h"
#include "ddpm/philox.h"

namespace ddpm {
namespace cuda {

constexpr int kThreads = 256;
// Blocks per SM when the runtime cannot say how many fit (see grid_size).
constexpr int kBlocksPerSm = 8;

// VEC elements of S in 16 bytes.
template <typename S>
struct VecWidth {
  static constexpr int value = 16 / static_cast<int>(sizeof(S));
};

template <typename S, int V>
struct alignas(sizeof(S) * V) Pack {
  S v[V];
};

// Loads V elements into the compute type (one 16-byte load when V > 1).
template <int V, typename S, typename acc>
__device__ __forceinline__ void load_pack(const S* p, acc (&out)[V]) {
  if (V == 1) {
    out[0] = load(p);
  } else {
    const Pack<S, V> pk = *reinterpret_cast<const Pack<S, V>*>(p);
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = load(&pk.v[j]);
  }
}

// Rounds V values once to S and stores them (one 16-byte store when V > 1).
template <int V, typename S, typename acc>
__device__ __forceinline__ void store_pack(S* p, const acc (&in)[V]) {
  if (V == 1) {
    store(p, in[0]);
  } else {
    Pack<S, V> pk;
#pragma unroll
    for (int j = 0; j < V; ++j) store(&pk.v[j], in[j]);
    *reinterpret_cast<Pack<S, V>*>(p) = pk;
  }
}

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// For an operand that may be absent (null: an undefined gradient, reading as
// zeros): p + offset is aligned or p is null; V elements at p + offset, or
// zeros.
template <typename S>
__device__ __forceinline__ bool aligned16_or_null(const S* p, int64_t offset) {
  return p == nullptr || aligned16(p + offset);
}
template <int V, typename S, typename acc>
__device__ __forceinline__ void load_pack_or_zero(const S* p, int64_t offset,
                                                  acc (&out)[V]) {
  if (p == nullptr) {
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = acc(0);
  } else {
    load_pack<V>(p + offset, out);
  }
}

// Where element `offset` of the samples from b_first on lies: sample b,
// element i. offset < sample_numel (the common case: the same sample) needs
// no division; otherwise a 32-bit one when the numbers fit, which is the
// case for any offset a chunk forms unless one sample has 2^32 elements.
struct ElementIndex {
  int64_t b, i;
};
__device__ __forceinline__ ElementIndex locate(int64_t b_first, int64_t offset,
                                               int64_t sample_numel) {
  if (offset < sample_numel) return {b_first, offset};
  if (offset <= 0xffffffffLL && sample_numel <= 0xffffffffLL) {
    const uint32_t q = static_cast<uint32_t>(offset) / static_cast<uint32_t>(sample_numel);
    return {b_first + q, offset - static_cast<int64_t>(q) * sample_numel};
  }
  const int64_t q = offset / sample_numel;
  return {b_first + q, offset - q * sample_numel};
}

// The chunk starting at element `chunk`: its first sample, and the offset of
// the chunk in it. One division per chunk, the same in every thread: 32-bit
// below 2^32 elements, 64-bit beyond.
struct ChunkStart {
  int64_t b_first, offset;
};
__device__ __forceinline__ ChunkStart chunk_start(int64_t chunk, int64_t sample_numel) {
  if (chunk <= 0xffffffffLL && sample_numel <= 0xffffffffLL) {
    const uint32_t b_first =
        static_cast<uint32_t>(chunk) / static_cast<uint32_t>(sample_numel);
    return {b_first, chunk - static_cast<int64_t>(b_first) * sample_numel};
  }
  const int64_t b_first = chunk / sample_numel;
  return {b_first, chunk - b_first * sample_numel};
}

// Each thread asks op.coef(b) for the coefficients of its sample, once per
// chunk (once per element where it goes element by element): it must be
// cheap. The linear maps' and the loss's are a few table reads; the steps'
// are formed by a prologue (launch_coef_prologue) and read here.
template <typename Op, int VEC>
__global__ void __launch_bounds__(kThreads, Op::kMinBlocksPerSm)
    elementwise_kernel(const Op op, int64_t batch, int64_t sample_numel) {
  constexpr int64_t kChunk = static_cast<int64_t>(kThreads) * VEC;
  const int64_t total = batch * sample_numel;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kChunk;

  for (int64_t chunk = static_cast<int64_t>(blockIdx.x) * kChunk; chunk < total;
       chunk += stride) {
    const int64_t thread_offset = static_cast<int64_t>(threadIdx.x) * VEC;
    if (chunk + thread_offset >= total) continue;
    const ChunkStart start = chunk_start(chunk, sample_numel);
    const ElementIndex e = locate(start.b_first, start.offset + thread_offset, sample_numel);
    if (VEC > 1 && e.i + VEC <= sample_numel && op.aligned(e.b, e.i)) {
      op.template apply<VEC>(op.coef(e.b), e.b, e.i);
    } else {
      // (each element asks for its coefficients: holding them across the
      // loop would cost registers every thread pays for)
      const int64_t left = total - (chunk + thread_offset);
      for (int j = 0; j < VEC && j < left; ++j) {
        const ElementIndex ej = locate(e.b, e.i + j, sample_numel);
        op.template apply<1>(op.coef(ej.b), ej.b, ej.i);
      }
    }
  }
}

// The prologue of ops whose coefficients are costly (the steps: logs,
// exponentials and square roots in double): one thread per sample writes
// op.form_coef(b) to coefs[b], which the main kernel then reads (the array
// stays in L2). The main kernel carries none of that code, so it needs fewer
// registers, and no block waits on it.
template <typename Op>
__global__ void __launch_bounds__(kThreads)
    coef_prologue_kernel(const Op op, int64_t batch, typename Op::Coef* coefs) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (b < batch) coefs[b] = op.form_coef(b);
}

// Every kernel starts here. Built as plain C++ against the stand-in runtime
// of tests/cuda_host (which defines DDPM_CUDA_HOST_EMULATION), the grid runs on
// the CPU, each block's threads as fibers: scripts/cuda_host_check.sh.
template <typename... Params, typename... Args>
inline void launch_kernel(void (*kernel)(Params...), unsigned grid,
                          cudaStream_t stream, const Args&... args) {
#if defined(DDPM_CUDA_HOST_EMULATION)
  (void)stream;
  cuda_host::launch(kernel, grid, kThreads, args...);
#else
  kernel<<<grid, kThreads, 0, stream>>>(args...);
#endif
}

// Blocks of kKernel that fit on one SM at once (its registers and shared
// memory decide), asked of the runtime once per kernel.
template <auto kKernel>
int resident_blocks_per_sm() {
  static const int blocks = [] {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kKernel, kThreads, 0) !=
            cudaSuccess ||
        n < 1) {
      (void)cudaGetLastError();  // clear it: the launch checks its own
      n = kBlocksPerSm;
    }
    return n;
  }();
  return blocks;
}

// Blocks for `chunks` chunks of work: one each, at most one wave of resident
// blocks (the kernels are grid-stride loops: blocks beyond those that fit
// would only wait for a free SM).
template <auto kKernel>
unsigned grid_size(int64_t chunks, CudaLaunch launch) {
  const int64_t max_blocks = static_cast<int64_t>(std::max(launch.num_sms, 1)) *
                             resident_blocks_per_sm<kKernel>();
  return static_cast<unsigned>(std::min(chunks, max_blocks));
}

// One launch of Op over [batch, sample_numel] on the given stream.
template <typename S, typename Op>
void launch_elementwise(const Op& op, int64_t batch, int64_t sample_numel,
                        CudaLaunch launch) {
  const int64_t total = batch * sample_numel;
  if (total == 0) return;
  constexpr int VEC = VecWidth<S>::value;
  const unsigned grid = grid_size<elementwise_kernel<Op, VEC>>(
      (total + kThreads * VEC - 1) / (kThreads * VEC), launch);
  launch_kernel(elementwise_kernel<Op, VEC>, grid,
                static_cast<cudaStream_t>(launch.stream), op, batch, sample_numel);
}

// The prologue (coef_prologue_kernel) on the same stream: coefs, of at
// least `batch` entries, in device memory the caller provides
// (CudaLaunch::workspace, sized by cuda_workspace_bytes).
template <typename Op>
void launch_coef_prologue(const Op& op, int64_t batch, typename Op::Coef* coefs,
                          CudaLaunch launch) {
  if (batch == 0) return;
  const unsigned grid = static_cast<unsigned>((batch + kThreads - 1) / kThreads);
  launch_kernel(coef_prologue_kernel<Op>, grid, static_cast<cudaStream_t>(launch.stream), op,
                batch, coefs);
}

// The same loop with the noise drawn in the kernel (ddpm/philox.h): a chunk
// is one noise block of 1024 elements, thread c draws the Philox output of
// subsequence block*256 + c and applies its four normals to elements
// chunk + l*256 + c, l = 0..3: four coalesced rows per block.
static_assert(kThreads == kNoiseRowLength, "one noise subsequence per thread");

template <typename Op>
__global__ void __launch_bounds__(kThreads, Op::kMinBlocksPerSm)
    noise_kernel(const Op op, int64_t batch, int64_t sample_numel,
                 const NoiseKey key_source) {
  const NoiseKey key = key_source.resolved();  // a captured graph's: read at each replay
  const int64_t total = batch * sample_numel;
  const int64_t num_blocks = (total + kNoiseBlockSize - 1) / kNoiseBlockSize;
  for (int64_t block = blockIdx.x; block < num_blocks; block += gridDim.x) {
    const int64_t chunk = block * kNoiseBlockSize;
    const ChunkStart start = chunk_start(chunk, sample_numel);
    const Normal4 z = normals_for_subsequence(
        key, static_cast<uint64_t>(block) * kNoiseRowLength + threadIdx.x);
#pragma unroll
    for (int lane = 0; lane < kNoiseLanes; ++lane) {
      const int64_t offset = lane * kNoiseRowLength + threadIdx.x;
      if (chunk + offset < total) {
        const ElementIndex e = locate(start.b_first, start.offset + offset, sample_numel);
        op.apply_noise(op.coef(e.b), e.b, e.i, z.lane[lane]);
      }
    }
  }
}

template <typename Op>
void launch_noise(const Op& op, int64_t batch, int64_t sample_numel,
                  const NoiseKey& key, CudaLaunch launch) {
  const int64_t total = batch * sample_numel;
  if (total == 0) return;
  const unsigned grid =
      grid_size<noise_kernel<Op>>((total + kNoiseBlockSize - 1) / kNoiseBlockSize, launch);
  launch_kernel(noise_kernel<Op>, grid, static_cast<cudaStream_t>(launch.stream),
                op, batch, sample_numel, key);
}

// t[b], or -1 when outside [0, T): callers then use NaN coefficients.
__device__ __forceinline__ int64_t checked_timestep(const Timesteps& ts,
                                                    int64_t b) {
  const int64_t t = ts.t[b];
  return (t >= 0 && t < ts.num_timesteps) ? t : -1;
}

}  // namespace cuda
}  // namespace ddpm
