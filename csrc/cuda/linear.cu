// The per-sample linear map on CUDA: q_sample and the posterior mean.
//   u, v, out: [batch, sample_numel]; per_sample[i]: [batch]
//   out = a_t*u + b_t*v (v + noise_offset[b, channel] with offset noise);
//   per_sample[i][b] = per_sample_tables[i][t_b],
//   written by the thread that owns element 0 of sample b (by a kernel of
//   its own when samples are empty)
//   backward: grad_u = a_t*grad, grad_v = b_t*grad (grad_v null: the first
//   only, which is scale_by_timestep)
//   with in-kernel noise (noise_kernel): v is drawn, not read, and written
//   next to out
#include "ddpm/elementwise.h"
#include "elementwise.cuh"

namespace ddpm {
namespace {

// The per-sample coefficients both kernels of this file use (t checked).
template <typename S, typename T, typename P>
struct LinearOpBase {
  using acc = acc_t<S>;
  using Coef = LinearCoef<acc>;
  // Register budget (see elementwise.cuh): 5 blocks of 256 threads per SM
  // forward, 6 backward.
  static constexpr int kMinBlocksPerSm =
      std::is_same<P, LinearBackwardParams<S, T>>::value ? 6 : 5;
  P p;

  __device__ Coef coef(int64_t b) const {
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    return t < 0 ? nan_coef<acc, Coef>() : linear_coef<acc>(p.tables, t);
  }
};

template <typename S, typename T>
__device__ void write_per_sample(const LinearParams<S, T>& p, int64_t b) {
  using acc = acc_t<S>;
  const int64_t t = cuda::checked_timestep(p.timesteps, b);
  for (int j = 0; j < 2; ++j) {
    if (p.per_sample[j] == nullptr) continue;
    store(p.per_sample[j] + b, t < 0 ? std::numeric_limits<acc>::quiet_NaN()
                                     : static_cast<acc>(p.per_sample_tables[j][t]));
  }
}

template <typename S, typename T>
struct LinearOp : LinearOpBase<S, T, LinearParams<S, T>> {
  using Base = LinearOpBase<S, T, LinearParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    return cuda::aligned16(p.u + off) && cuda::aligned16(p.v + off) &&
           cuda::aligned16(p.out + off);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    acc u[V], v[V], o[V];
    cuda::load_pack<V>(p.u + off, u);
    cuda::load_pack<V>(p.v + off, v);
    if (p.noise_offset.present()) {  // uniform across the grid
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = v[j] + p.noise_offset.at(b, i + j);
    }
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = linear_elem(k, u[j], v[j]);
    cuda::store_pack<V>(p.out + off, o);
    if (i == 0) write_per_sample(p, b);
  }
  // In-kernel noise: write out and the noise itself (the training target).
  __device__ void apply_noise(const Coef& k, int64_t b, int64_t i, float z) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    const acc noise = static_cast<acc>(z);
    store(p.out + off, linear_elem(k, load(p.u + off), noise));
    store(p.noise_out + off, noise);
    if (i == 0) write_per_sample(p, b);
  }
};

// Samples with no elements still get their per-sample values.
template <typename S, typename T>
__global__ void per_sample_kernel(const LinearParams<S, T> p) {
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < p.batch;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    write_per_sample(p, b);
  }
}

template <typename S, typename T>
struct LinearBackwardOp : LinearOpBase<S, T, LinearBackwardParams<S, T>> {
  using Base = LinearOpBase<S, T, LinearBackwardParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    return cuda::aligned16(p.grad + off) && cuda::aligned16(p.grad_u + off) &&
           cuda::aligned16_or_null(p.grad_v, off);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    acc g[V], gu[V], gv[V];
    cuda::load_pack<V>(p.grad + off, g);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      gu[j] = k.a * g[j];
      gv[j] = k.b * g[j];
    }
    cuda::store_pack<V>(p.grad_u + off, gu);
    // uniform across the grid: scale_by_timestep writes grad_u only
    if (p.grad_v != nullptr) cuda::store_pack<V>(p.grad_v + off, gv);
  }
};

}  // namespace

template <typename S, typename T>
void cuda_kernel(const LinearParams<S, T>& p, CudaLaunch launch) {
  if (p.sample_numel == 0) {
    if (p.batch > 0 && (p.per_sample[0] != nullptr || p.per_sample[1] != nullptr)) {
      const unsigned grid = static_cast<unsigned>(
          std::min<int64_t>((p.batch + cuda::kThreads - 1) / cuda::kThreads, 1024));
      cuda::launch_kernel(per_sample_kernel<S, T>, grid,
                          static_cast<cudaStream_t>(launch.stream), p);
    }
    return;
  }
  if (p.generate_noise) {
    cuda::launch_noise(LinearOp<S, T>{{p}}, p.batch, p.sample_numel, p.noise_key, launch);
    return;
  }
  cuda::launch_elementwise<S>(LinearOp<S, T>{{p}}, p.batch, p.sample_numel, launch);
}

template <typename S, typename T>
void cuda_kernel(const LinearBackwardParams<S, T>& p, CudaLaunch launch) {
  cuda::launch_elementwise<S>(LinearBackwardOp<S, T>{{p}}, p.batch, p.sample_numel, launch);
}

DDPM_INSTANTIATE_CUDA(cuda_kernel, LinearParams)
DDPM_INSTANTIATE_CUDA(cuda_kernel, LinearBackwardParams)

}  // namespace ddpm
