// diffusion_mse on CUDA (see LossParams in ddpm/kernels.h).
//   model_output: sample b at b*model_output_batch_stride; x_start, noise,
//   grad_model_output: [batch, sample_numel]; loss, grad: [batch]
//   loss[b] = w[t_b] * mean_i (out - target)^2
//     tiles_kernel: one block per tile of kLossTile elements of one sample
//       (grid-stride over the batch's tiles), each thread summing its
//       squares in double, then a tree over the block's threads in shared
//       memory: partials[tile]
//     finish_kernel: one thread per sample sums its tiles in order, times
//       w[t_b]/N (NaN for a timestep outside [0, T))
//   backward: grad_model_output = 2*grad[b]*w[t_b]/N * (out - target), the
//     element-wise loop of elementwise.cuh
#include "ddpm/elementwise.h"
#include "elementwise.cuh"

namespace ddpm {
namespace {

// V elements of x_start or noise where the target reads them, else zeros.
template <bool kReads, int V, typename S, typename acc>
__device__ __forceinline__ void load_pack_if(const S* p, acc (&out)[V]) {
  if (kReads) {
    cuda::load_pack<V>(p, out);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = acc(0);
  }
}

// The operands of sample b at element i are 16-byte aligned (those read).
template <LossTarget kTarget, typename P>
__device__ __forceinline__ bool operands_aligned(const P& p, int64_t b, int64_t i) {
  const int64_t off = b * p.sample_numel + i;
  return cuda::aligned16(p.model_output + b * p.model_output_batch_stride + i) &&
         (!loss_reads_x_start<kTarget>() || cuda::aligned16(p.x_start + off)) &&
         (!loss_reads_noise<kTarget>() || cuda::aligned16(p.noise + off));
}

// out - target for V elements of sample b from element i.
template <LossTarget kTarget, int V, typename P, typename acc>
__device__ __forceinline__ void diffs(const P& p, const LossCoef<acc>& k, int64_t b, int64_t i,
                                      acc (&d)[V]) {
  const int64_t off = b * p.sample_numel + i;
  acc out[V], x_start[V], noise[V];
  cuda::load_pack<V>(p.model_output + b * p.model_output_batch_stride + i, out);
  load_pack_if<loss_reads_x_start<kTarget>()>(p.x_start + off, x_start);
  load_pack_if<loss_reads_noise<kTarget>()>(p.noise + off, noise);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    // 0 added where there is no offset, as the CPU loop adds it
    const acc noise_offset = p.noise_offset.present() ? p.noise_offset.at(b, i + j) : acc(0);
    d[j] = loss_diff<kTarget>(k, out[j], x_start[j], noise[j] + noise_offset);
  }
}

template <LossTarget kTarget, int VEC, typename S, typename T>
__global__ void __launch_bounds__(cuda::kThreads) tiles_kernel(const LossParams<S, T> p) {
  using acc = acc_t<S>;
  __shared__ double thread_sums[cuda::kThreads];
  const int64_t n = p.sample_numel;
  const int64_t tiles = loss_tiles_per_sample(n);
  for (int64_t tile = blockIdx.x; tile < p.batch * tiles; tile += gridDim.x) {
    const int64_t b = tile / tiles;
    const int64_t i0 = (tile - b * tiles) * kLossTile;
    const int64_t i1 = i0 + kLossTile < n ? i0 + kLossTile : n;
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    // (a bad t: finish_kernel writes NaN whatever the sum)
    const LossCoef<acc> k = loss_coef<acc>(p.tables, t < 0 ? 0 : t, 0.0);
    double sum = 0.0;
    for (int64_t i = i0 + static_cast<int64_t>(threadIdx.x) * VEC; i < i1;
         i += static_cast<int64_t>(cuda::kThreads) * VEC) {
      if (VEC > 1 && i + VEC <= i1 && operands_aligned<kTarget>(p, b, i)) {
        acc d[VEC];
        diffs<kTarget, VEC>(p, k, b, i, d);
#pragma unroll
        for (int j = 0; j < VEC; ++j) sum += static_cast<double>(d[j]) * static_cast<double>(d[j]);
      } else {
        for (int64_t e = i; e < i + VEC && e < i1; ++e) {
          acc d[1];
          diffs<kTarget, 1>(p, k, b, e, d);
          sum += static_cast<double>(d[0]) * static_cast<double>(d[0]);
        }
      }
    }
    thread_sums[threadIdx.x] = sum;
    __syncthreads();
    for (int half = cuda::kThreads / 2; half > 0; half /= 2) {
      if (threadIdx.x < half) thread_sums[threadIdx.x] += thread_sums[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) p.partials[tile] = thread_sums[0];
    __syncthreads();  // thread_sums[0] is read before the next tile writes it
  }
}

template <typename S, typename T>
__global__ void __launch_bounds__(cuda::kThreads) finish_kernel(const LossParams<S, T> p) {
  using acc = acc_t<S>;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < p.batch;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    p.loss[b] = t < 0 ? std::numeric_limits<acc>::quiet_NaN()
                      : static_cast<acc>(loss_from_partials(p, b, t));
  }
}

template <LossTarget kTarget, typename S, typename T>
struct LossBackwardOp {
  using acc = acc_t<S>;
  using Coef = LossCoef<acc>;
  // Register budget (see elementwise.cuh): 4 blocks of 256 threads per SM.
  static constexpr int kMinBlocksPerSm = 4;
  LossBackwardParams<S, T> p;

  __device__ Coef coef(int64_t b) const {
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    return t < 0 ? nan_coef<acc, Coef>() : loss_backward_coef<acc>(p, b, t);
  }
  __device__ bool aligned(int64_t b, int64_t i) const {
    return operands_aligned<kTarget>(p, b, i) &&
           cuda::aligned16(p.grad_model_output + b * p.sample_numel + i);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    acc d[V], g[V];
    diffs<kTarget, V>(p, k, b, i, d);
#pragma unroll
    for (int j = 0; j < V; ++j) g[j] = k.scale * d[j];
    cuda::store_pack<V>(p.grad_model_output + b * p.sample_numel + i, g);
  }
};

}  // namespace

template <typename S, typename T>
void cuda_kernel(const LossParams<S, T>& p, CudaLaunch launch) {
  if (p.batch == 0) return;
  const auto stream = static_cast<cudaStream_t>(launch.stream);
  const int64_t tiles = p.batch * loss_tiles_per_sample(p.sample_numel);
  if (tiles > 0) {
    dispatch_loss_target(p.target, [&](auto target) {
      constexpr auto kKernel = tiles_kernel<decltype(target)::value, cuda::VecWidth<S>::value, S, T>;
      cuda::launch_kernel(kKernel, cuda::grid_size<kKernel>(tiles, launch), stream, p);
    });
  }
  constexpr auto kFinish = finish_kernel<S, T>;
  cuda::launch_kernel(
      kFinish,
      cuda::grid_size<kFinish>((p.batch + cuda::kThreads - 1) / cuda::kThreads, launch), stream,
      p);
}

template <typename S, typename T>
void cuda_kernel(const LossBackwardParams<S, T>& p, CudaLaunch launch) {
  dispatch_loss_target(p.target, [&](auto target) {
    cuda::launch_elementwise<S>(LossBackwardOp<decltype(target)::value, S, T>{p}, p.batch,
                                p.sample_numel, launch);
  });
}

DDPM_INSTANTIATE_CUDA(cuda_kernel, LossParams)
DDPM_INSTANTIATE_CUDA(cuda_kernel, LossBackwardParams)

}  // namespace ddpm
