// The CUDA loop shared by every operator (torch-free: CUDA runtime only).
//
// Data are [batch, sample_numel], flattened. Each block walks chunks of
// kThreads*VEC contiguous elements (grid-stride, 64-bit indices), so one
// launch with a grid of one wave of resident blocks covers any size. At the start of a
// chunk the block computes the per-sample coefficients of the samples that
// chunk touches into shared memory, once per sample per chunk, from t[b] and
// the schedule tables; when a chunk touches more than kMaxSharedSamples
// samples (tiny samples), each thread forms its own.
//
// Each thread then handles VEC consecutive elements: with one 16-byte load
// and store per tensor when they lie in one sample and every pointer is
// 16-byte aligned, element by element otherwise.
//
// An Op supplies:
//   using Coef = ...;                                // per-sample coefficients
//   __device__ Coef coef(int64_t b) const;          // NaN coefs for a bad t
//   __device__ bool aligned(int64_t b, int64_t i) const;  // every pointer at (b, i)
//   template <int V> __device__ void apply(const Coef&, int64_t b, int64_t i) const;
// and, for in-kernel noise (noise_kernel below),
//   __device__ void apply_noise(const Coef&, int64_t b, int64_t i, float noise) const;
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "ddpm/kernels.h"
#include "ddpm/philox.h"

namespace ddpm {
namespace cuda {

constexpr int kThreads = 256;
constexpr int kMaxSharedSamples = 32;
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

// Fills shared_coefs with the coefficients of the samples that elements
// [chunk, chunk_end) touch; false (nothing stored) when they are more than
// kMaxSharedSamples. Every thread of the block calls it.
template <typename Op>
__device__ __forceinline__ bool load_chunk_coefs(
    const Op& op, typename Op::Coef* shared_coefs, int64_t chunk,
    int64_t chunk_end, int64_t sample_numel) {
  const int64_t b_first = chunk / sample_numel;
  const int64_t num_samples = (chunk_end - 1) / sample_numel - b_first + 1;
  const bool use_shared = num_samples <= kMaxSharedSamples;
  __syncthreads();  // the previous chunk is done reading shared_coefs
  if (use_shared && threadIdx.x < num_samples) {
    shared_coefs[threadIdx.x] = op.coef(b_first + threadIdx.x);
  }
  __syncthreads();
  return use_shared;
}

template <typename Op, int VEC>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(const Op op, int64_t batch, int64_t sample_numel) {
  using Coef = typename Op::Coef;
  __shared__ Coef shared_coefs[kMaxSharedSamples];
  constexpr int64_t kChunk = static_cast<int64_t>(kThreads) * VEC;
  const int64_t total = batch * sample_numel;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kChunk;

  for (int64_t chunk = static_cast<int64_t>(blockIdx.x) * kChunk; chunk < total;
       chunk += stride) {
    const int64_t chunk_end = chunk + kChunk < total ? chunk + kChunk : total;
    const int64_t b_first = chunk / sample_numel;
    const bool use_shared =
        load_chunk_coefs(op, shared_coefs, chunk, chunk_end, sample_numel);

    const int64_t e = chunk + static_cast<int64_t>(threadIdx.x) * VEC;
    if (e >= total) continue;
    const int64_t b = e / sample_numel;
    const int64_t i = e - b * sample_numel;
    const Coef k = use_shared ? shared_coefs[b - b_first] : op.coef(b);
    if (VEC > 1 && i + VEC <= sample_numel && op.aligned(b, i)) {
      op.template apply<VEC>(k, b, i);
    } else {
      for (int j = 0; j < VEC && e + j < total; ++j) {
        const int64_t bj = (e + j) / sample_numel;
        const int64_t ij = e + j - bj * sample_numel;
        if (bj == b) {
          op.template apply<1>(k, bj, ij);
        } else {
          op.template apply<1>(
              use_shared ? shared_coefs[bj - b_first] : op.coef(bj), bj, ij);
        }
      }
    }
  }
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

// The same loop with the noise drawn in the kernel (ddpm/philox.h): a chunk
// is one noise block of 1024 elements, thread c draws the Philox output of
// subsequence block*256 + c and applies its four normals to elements
// chunk + l*256 + c, l = 0..3: four coalesced rows per block.
static_assert(kThreads == kNoiseRowLength, "one noise subsequence per thread");

template <typename Op>
__global__ void __launch_bounds__(kThreads)
    noise_kernel(const Op op, int64_t batch, int64_t sample_numel,
                 const NoiseKey key_source) {
  using Coef = typename Op::Coef;
  __shared__ Coef shared_coefs[kMaxSharedSamples];
  const NoiseKey key = key_source.resolved();  // a captured graph's: read at each replay
  const int64_t total = batch * sample_numel;
  const int64_t num_blocks = (total + kNoiseBlockSize - 1) / kNoiseBlockSize;
  for (int64_t block = blockIdx.x; block < num_blocks; block += gridDim.x) {
    const int64_t chunk = block * kNoiseBlockSize;
    const int64_t chunk_end =
        chunk + kNoiseBlockSize < total ? chunk + kNoiseBlockSize : total;
    const int64_t b_first = chunk / sample_numel;
    const bool use_shared =
        load_chunk_coefs(op, shared_coefs, chunk, chunk_end, sample_numel);
    const Normal4 z = normals_for_subsequence(
        key, static_cast<uint64_t>(block) * kNoiseRowLength + threadIdx.x);
#pragma unroll
    for (int lane = 0; lane < kNoiseLanes; ++lane) {
      const int64_t e = chunk + lane * kNoiseRowLength + threadIdx.x;
      if (e < chunk_end) {
        const int64_t b = e / sample_numel;
        const int64_t i = e - b * sample_numel;
        op.apply_noise(use_shared ? shared_coefs[b - b_first] : op.coef(b), b,
                       i, z.lane[lane]);
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
