// posterior_mean_variance and its backward on CUDA.
//   x_start, x_t, mean: [batch, sample_numel]; variance, log_variance: [batch]
//   mean = coef1_t*x_start + coef2_t*x_t; the per-sample variance and
//   log-variance are written by the thread that owns element 0 of the sample.
//   backward: grad_x_start = coef1_t*grad_mean, grad_x_t = coef2_t*grad_mean
#include "ddpm/elementwise.h"
#include "elementwise.cuh"

namespace ddpm {
namespace {

// The per-sample coefficients both kernels of this file use (t checked).
template <typename S, typename T, typename P>
struct PosteriorOpBase {
  using acc = acc_t<S>;
  using Coef = PosteriorCoef<acc>;
  P p;

  __device__ Coef coef(int64_t b) const {
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    return t < 0 ? nan_coef<acc, Coef>() : posterior_coef<acc>(p.tables, t);
  }
};

template <typename S, typename T>
struct PosteriorOp : PosteriorOpBase<S, T, PosteriorParams<S, T>> {
  using Base = PosteriorOpBase<S, T, PosteriorParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    return cuda::aligned16(p.x_start + off) && cuda::aligned16(p.x_t + off) &&
           cuda::aligned16(p.mean + off);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    acc x0[V], xt[V], m[V];
    cuda::load_pack<V>(p.x_start + off, x0);
    cuda::load_pack<V>(p.x_t + off, xt);
#pragma unroll
    for (int j = 0; j < V; ++j) m[j] = posterior_mean_elem(k, x0[j], xt[j]);
    cuda::store_pack<V>(p.mean + off, m);
    if (i == 0) {
      const int64_t t = cuda::checked_timestep(p.timesteps, b);
      const acc nan = std::numeric_limits<acc>::quiet_NaN();
      store(p.variance + b,
            t < 0 ? nan : static_cast<acc>(p.tables.posterior_variance[t]));
      store(p.log_variance + b,
            t < 0 ? nan
                  : static_cast<acc>(p.tables.posterior_log_variance_clipped[t]));
    }
  }
};

template <typename S, typename T>
struct PosteriorBackwardOp : PosteriorOpBase<S, T, PosteriorBackwardParams<S, T>> {
  using Base = PosteriorOpBase<S, T, PosteriorBackwardParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    return cuda::aligned16(p.grad_mean + off) &&
           cuda::aligned16(p.grad_x_start + off) && cuda::aligned16(p.grad_x_t + off);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    acc g[V], g0[V], gt[V];
    cuda::load_pack<V>(p.grad_mean + off, g);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      g0[j] = k.c1 * g[j];
      gt[j] = k.c2 * g[j];
    }
    cuda::store_pack<V>(p.grad_x_start + off, g0);
    cuda::store_pack<V>(p.grad_x_t + off, gt);
  }
};

}  // namespace

template <typename S, typename T>
void posterior_mean_variance_cuda(const PosteriorParams<S, T>& p,
                                  CudaLaunch launch) {
  cuda::launch_elementwise<S>(PosteriorOp<S, T>{{p}}, p.batch, p.sample_numel,
                              launch);
}

template <typename S, typename T>
void posterior_mean_variance_backward_cuda(
    const PosteriorBackwardParams<S, T>& p, CudaLaunch launch) {
  cuda::launch_elementwise<S>(PosteriorBackwardOp<S, T>{{p}}, p.batch,
                              p.sample_numel, launch);
}

#define DDPM_INSTANTIATE(S, T)                                        \
  template void posterior_mean_variance_cuda<S, T>(                   \
      const PosteriorParams<S, T>&, CudaLaunch);                      \
  template void posterior_mean_variance_backward_cuda<S, T>(          \
      const PosteriorBackwardParams<S, T>&, CudaLaunch);
DDPM_INSTANTIATE_FOR_TYPES(DDPM_INSTANTIATE)
#undef DDPM_INSTANTIATE

}  // namespace ddpm
