// q_sample on the CPU.
//   x_start, noise, out: [batch, sample_numel]
//   out = sqrt(abar_t)*x_start + sqrt(1-abar_t)*noise
//   backward: grad_x_start = sqrt(abar_t)*grad, grad_noise = sqrt(1-abar_t)*grad
//   (grad_noise null: the first only, which is scale_by_timestep)
//   with in-kernel noise: noise = Philox normals (noise.h), written to
//   noise_out as well, still one pass over memory
#include "ddpm/elementwise.h"
#include "loops.h"
#include "noise.h"

namespace ddpm {
namespace {

// x_start and out are not __restrict: out may be x_start (q_sample.out in
// place), see p_sample_loop.
template <typename S, typename acc>
DDPM_CPU_CLONES void q_sample_run(QSampleCoef<acc> k, const S* x_start,
                  const S* __restrict noise, S* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    store(out + i, q_sample_elem(k, load(x_start + i), load(noise + i)));
  }
}

// noise: float normals drawn by the noise pass (noise.h), which inlines this
// loop; noise_out gets them rounded to S.
template <typename S, typename acc>
DDPM_ALWAYS_INLINE inline void q_sample_generated_loop(QSampleCoef<acc> k,
                                            const S* __restrict x_start,
                                            const float* __restrict noise,
                                            S* __restrict out,
                                            S* __restrict noise_out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc z = static_cast<acc>(noise[i]);
    store(out + i, q_sample_elem(k, load(x_start + i), z));
    store(noise_out + i, z);
  }
}

template <typename S, typename acc>
DDPM_CPU_CLONES void q_sample_backward_run(QSampleCoef<acc> k, const S* __restrict grad,
                           S* __restrict grad_x_start, S* __restrict grad_noise,
                           int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc g = load(grad + i);
    store(grad_x_start + i, k.a * g);
    store(grad_noise + i, k.b * g);
  }
}

template <typename S, typename acc>
DDPM_CPU_CLONES void scale_run(acc a, const S* __restrict in,
                               S* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(out + i, a * load(in + i));
}

}  // namespace

template <typename S, typename T>
int64_t q_sample_cpu(const QSampleParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<QSampleCoef<acc>> coefs;
  const int64_t bad = cpu::gather_coefficients(
      p.timesteps, p.batch, coefs,
      [&](int64_t t) { return q_sample_coef<acc>(p.tables, t); });
  if (bad >= 0) return bad;
  const int64_t n = p.sample_numel;
  if (p.generate_noise) {
    cpu::for_each_noise_run(
        p.batch, n, p.noise_key,
        [&](int64_t b, int64_t i0, int64_t i1, const float* z)
            DDPM_ALWAYS_INLINE {
          const int64_t off = b * n + i0;
          q_sample_generated_loop(coefs[b], p.x_start + off, z, p.out + off,
                                 p.noise_out + off, i1 - i0);
        },
        [&](int64_t b, int64_t i0, int64_t i1, cpu::NoisePrefetch& next) {
          const int64_t off = b * n + i0;
          next.add(p.x_start + off, i1 - i0, false);
          next.add(p.out + off, i1 - i0, true);
          next.add(p.noise_out + off, i1 - i0, true);
        });
    return -1;
  }
  cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
    const int64_t off = b * n + i0;
    q_sample_run(coefs[b], p.x_start + off, p.noise + off, p.out + off,
                 i1 - i0);
  });
  return -1;
}

template <typename S, typename T>
int64_t q_sample_backward_cpu(const QSampleBackwardParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<QSampleCoef<acc>> coefs;
  const int64_t bad = cpu::gather_coefficients(
      p.timesteps, p.batch, coefs,
      [&](int64_t t) { return q_sample_coef<acc>(p.tables, t); });
  if (bad >= 0) return bad;
  const int64_t n = p.sample_numel;
  if (p.grad_noise == nullptr) {  // only grad_x_start = a_t * grad
    cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
      const int64_t off = b * n + i0;
      scale_run(coefs[b].a, p.grad + off, p.grad_x_start + off, i1 - i0);
    });
    return -1;
  }
  cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
    const int64_t off = b * n + i0;
    q_sample_backward_run(coefs[b], p.grad + off, p.grad_x_start + off,
                          p.grad_noise + off, i1 - i0);
  });
  return -1;
}

#define DDPM_INSTANTIATE(S, T)                                         \
  template int64_t q_sample_cpu<S, T>(const QSampleParams<S, T>&);     \
  template int64_t q_sample_backward_cpu<S, T>(                        \
      const QSampleBackwardParams<S, T>&);
DDPM_INSTANTIATE_FOR_TYPES(DDPM_INSTANTIATE)
#undef DDPM_INSTANTIATE

}  // namespace ddpm
