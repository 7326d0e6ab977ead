// posterior_mean_variance on the CPU.
//   x_start, x_t, mean: [batch, sample_numel]; variance, log_variance: [batch]
//   mean = coef1_t*x_start + coef2_t*x_t
//   variance = posterior_variance[t], log_variance = posterior_log_variance_clipped[t]
//   backward: grad_x_start = coef1_t*grad_mean, grad_x_t = coef2_t*grad_mean
#include "ddpm/elementwise.h"
#include "loops.h"

namespace ddpm {
namespace {

// x_t and mean are not __restrict: mean may be x_t (posterior_mean_variance.out
// in place), see p_sample_loop.
template <typename S, typename acc>
DDPM_CPU_CLONES void posterior_mean_run(PosteriorCoef<acc> k, const S* __restrict x_start,
                        const S* x_t, S* mean, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    store(mean + i, posterior_mean_elem(k, load(x_start + i), load(x_t + i)));
  }
}

template <typename S, typename acc>
DDPM_CPU_CLONES void posterior_backward_run(PosteriorCoef<acc> k, const S* __restrict grad,
                            S* __restrict grad_x_start, S* __restrict grad_x_t,
                            int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc g = load(grad + i);
    store(grad_x_start + i, k.c1 * g);
    store(grad_x_t + i, k.c2 * g);
  }
}

}  // namespace

template <typename S, typename T>
int64_t posterior_mean_variance_cpu(const PosteriorParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<PosteriorCoef<acc>> coefs;
  const int64_t bad = cpu::gather_coefficients(
      p.timesteps, p.batch, coefs,
      [&](int64_t t) { return posterior_coef<acc>(p.tables, t); });
  if (bad >= 0) return bad;
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t t = p.timesteps.t[b];
    store(p.variance + b, static_cast<acc>(p.tables.posterior_variance[t]));
    store(p.log_variance + b,
          static_cast<acc>(p.tables.posterior_log_variance_clipped[t]));
  }
  const int64_t n = p.sample_numel;
  cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
    const int64_t off = b * n + i0;
    posterior_mean_run(coefs[b], p.x_start + off, p.x_t + off, p.mean + off,
                       i1 - i0);
  });
  return -1;
}

template <typename S, typename T>
int64_t posterior_mean_variance_backward_cpu(
    const PosteriorBackwardParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<PosteriorCoef<acc>> coefs;
  const int64_t bad = cpu::gather_coefficients(
      p.timesteps, p.batch, coefs,
      [&](int64_t t) { return posterior_coef<acc>(p.tables, t); });
  if (bad >= 0) return bad;
  const int64_t n = p.sample_numel;
  cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
    const int64_t off = b * n + i0;
    posterior_backward_run(coefs[b], p.grad_mean + off, p.grad_x_start + off,
                           p.grad_x_t + off, i1 - i0);
  });
  return -1;
}

#define DDPM_INSTANTIATE(S, T)                                              \
  template int64_t posterior_mean_variance_cpu<S, T>(                       \
      const PosteriorParams<S, T>&);                                        \
  template int64_t posterior_mean_variance_backward_cpu<S, T>(              \
      const PosteriorBackwardParams<S, T>&);
DDPM_INSTANTIATE_FOR_TYPES(DDPM_INSTANTIATE)
#undef DDPM_INSTANTIATE

}  // namespace ddpm
