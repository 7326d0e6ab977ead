// q_sample and its backward on CUDA.
//   x_start, noise, out: [batch, sample_numel]
//   out = sqrt(abar_t)*x_start + sqrt(1-abar_t)*noise
//   backward: grad_x_start = sqrt(abar_t)*grad, grad_noise = sqrt(1-abar_t)*grad
//   (grad_noise null: the first only, which is scale_by_timestep)
//   with in-kernel noise (noise_kernel): the noise is drawn, not read, and
//   written next to x_t
#include "ddpm/elementwise.h"
#include "elementwise.cuh"

namespace ddpm {
namespace {

// The per-sample coefficients both kernels of this file use (t checked).
template <typename S, typename T, typename P>
struct QSampleOpBase {
  using acc = acc_t<S>;
  using Coef = QSampleCoef<acc>;
  P p;

  __device__ Coef coef(int64_t b) const {
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    return t < 0 ? nan_coef<acc, Coef>() : q_sample_coef<acc>(p.tables, t);
  }
};

template <typename S, typename T>
struct QSampleOp : QSampleOpBase<S, T, QSampleParams<S, T>> {
  using Base = QSampleOpBase<S, T, QSampleParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    return cuda::aligned16(p.x_start + off) && cuda::aligned16(p.noise + off) &&
           cuda::aligned16(p.out + off);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    acc x[V], n[V], o[V];
    cuda::load_pack<V>(p.x_start + off, x);
    cuda::load_pack<V>(p.noise + off, n);
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = q_sample_elem(k, x[j], n[j]);
    cuda::store_pack<V>(p.out + off, o);
  }
  // In-kernel noise: write x_t and the noise itself (the training target).
  __device__ void apply_noise(const Coef& k, int64_t b, int64_t i, float z) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    const acc noise = static_cast<acc>(z);
    store(p.out + off, q_sample_elem(k, load(p.x_start + off), noise));
    store(p.noise_out + off, noise);
  }
};

template <typename S, typename T>
struct QSampleBackwardOp : QSampleOpBase<S, T, QSampleBackwardParams<S, T>> {
  using Base = QSampleOpBase<S, T, QSampleBackwardParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    return cuda::aligned16(p.grad + off) && cuda::aligned16(p.grad_x_start + off) &&
           (p.grad_noise == nullptr || cuda::aligned16(p.grad_noise + off));
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    acc g[V], gx[V], gn[V];
    cuda::load_pack<V>(p.grad + off, g);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      gx[j] = k.a * g[j];
      gn[j] = k.b * g[j];
    }
    cuda::store_pack<V>(p.grad_x_start + off, gx);
    // uniform across the grid: scale_by_timestep writes grad_x_start only
    if (p.grad_noise != nullptr) cuda::store_pack<V>(p.grad_noise + off, gn);
  }
};

}  // namespace

template <typename S, typename T>
void q_sample_cuda(const QSampleParams<S, T>& p, CudaLaunch launch) {
  if (p.generate_noise) {
    cuda::launch_noise(QSampleOp<S, T>{{p}}, p.batch, p.sample_numel, p.noise_key, launch);
    return;
  }
  cuda::launch_elementwise<S>(QSampleOp<S, T>{{p}}, p.batch, p.sample_numel, launch);
}

template <typename S, typename T>
void q_sample_backward_cuda(const QSampleBackwardParams<S, T>& p,
                            CudaLaunch launch) {
  cuda::launch_elementwise<S>(QSampleBackwardOp<S, T>{{p}}, p.batch,
                              p.sample_numel, launch);
}

#define DDPM_INSTANTIATE(S, T)                                              \
  template void q_sample_cuda<S, T>(const QSampleParams<S, T>&, CudaLaunch); \
  template void q_sample_backward_cuda<S, T>(                               \
      const QSampleBackwardParams<S, T>&, CudaLaunch);
DDPM_INSTANTIATE_FOR_TYPES(DDPM_INSTANTIATE)
#undef DDPM_INSTANTIATE

}  // namespace ddpm
