// The per-sample linear map on the CPU: q_sample and the posterior mean.
//   u, v, out: [batch, sample_numel]; per_sample[i]: [batch]
//   out = a_t*u + b_t*v                     (q_sample: u = x_0, v = noise;
//                                            posterior: u = x_0, v = x_t)
//   per_sample[i][b] = per_sample_tables[i][t_b]   (posterior variances)
//   backward: grad_u = a_t*grad, grad_v = b_t*grad (grad_v null: grad_u only,
//   which is scale_by_timestep)
//   with in-kernel noise: v = Philox normals (noise.h), written to noise_out
//   as well, still one pass over memory
#include "ddpm/elementwise.h"
#include "loops.h"
#include "noise.h"

namespace ddpm {
namespace {

// u, v and out are not __restrict: out may be u or v (in place), see
// step_loop.
template <typename S, typename acc>
DDPM_CPU_CLONES void linear_run(LinearCoef<acc> k, const S* u, const S* v, S* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(out + i, linear_elem(k, load(u + i), load(v + i)));
}

// q_sample with offset noise: v + off is the noise (off: this channel's);
// not __restrict, as linear_run
template <typename S, typename acc>
DDPM_CPU_CLONES void linear_offset_run(LinearCoef<acc> k, acc off, const S* u, const S* v,
                                       S* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(out + i, linear_elem(k, load(u + i), load(v + i) + off));
}

// v: float normals drawn by the noise pass (noise.h), which inlines this
// loop; noise_out gets them rounded to S.
template <typename S, typename acc>
DDPM_ALWAYS_INLINE inline void linear_generated_loop(LinearCoef<acc> k, const S* __restrict u,
                                                     const float* __restrict v,
                                                     S* __restrict out,
                                                     S* __restrict noise_out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc z = static_cast<acc>(v[i]);
    store(out + i, linear_elem(k, load(u + i), z));
    store(noise_out + i, z);
  }
}

template <typename S, typename acc>
DDPM_CPU_CLONES void linear_backward_run(LinearCoef<acc> k, const S* __restrict grad,
                                         S* __restrict grad_u, S* __restrict grad_v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc g = load(grad + i);
    store(grad_u + i, k.a * g);
    store(grad_v + i, k.b * g);
  }
}

template <typename S, typename acc>
DDPM_CPU_CLONES void scale_run(acc a, const S* __restrict in, S* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(out + i, a * load(in + i));
}

// The per-sample coefficients, or the index of a bad timestep.
template <typename acc, typename P>
int64_t linear_coefs(const P& p, std::vector<LinearCoef<acc>>& coefs) {
  return cpu::gather_coefficients(p.timesteps, p.batch, coefs,
                                  [&](int64_t, int64_t t) { return linear_coef<acc>(p.tables, t); });
}

}  // namespace

template <typename S, typename T>
int64_t cpu_kernel(const LinearParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<LinearCoef<acc>> coefs;
  if (const int64_t bad = linear_coefs(p, coefs); bad >= 0) return bad;
  for (int j = 0; j < 2; ++j) {
    if (p.per_sample[j] == nullptr) continue;
    for (int64_t b = 0; b < p.batch; ++b) {
      store(p.per_sample[j] + b, static_cast<acc>(p.per_sample_tables[j][p.timesteps.t[b]]));
    }
  }
  const int64_t n = p.sample_numel;
  if (p.generate_noise) {
    cpu::for_each_noise_run(
        p.batch, n, p.noise_key.resolved(),
        [&](int64_t b, int64_t i0, int64_t i1, const float* z) DDPM_ALWAYS_INLINE {
          const int64_t off = b * n + i0;
          linear_generated_loop(coefs[b], p.u + off, z, p.out + off, p.noise_out + off, i1 - i0);
        },
        [&](int64_t b, int64_t i0, int64_t i1, cpu::NoisePrefetch& next) {
          const int64_t off = b * n + i0;
          next.add(p.u + off, i1 - i0, false);
          next.add(p.out + off, i1 - i0, true);
          next.add(p.noise_out + off, i1 - i0, true);
        });
    return -1;
  }
  cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
    if (!p.noise_offset.present()) {
      const int64_t off = b * n + i0;
      linear_run(coefs[b], p.u + off, p.v + off, p.out + off, i1 - i0);
      return;
    }
    cpu::for_each_offset_run(p.noise_offset, b, i0, i1, [&](acc noise_offset, int64_t s0,
                                                             int64_t s1) {
      const int64_t off = b * n + s0;
      linear_offset_run(coefs[b], noise_offset, p.u + off, p.v + off, p.out + off, s1 - s0);
    });
  });
  return -1;
}

template <typename S, typename T>
int64_t cpu_kernel(const LinearBackwardParams<S, T>& p) {
  std::vector<LinearCoef<acc_t<S>>> coefs;
  if (const int64_t bad = linear_coefs(p, coefs); bad >= 0) return bad;
  const int64_t n = p.sample_numel;
  cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
    const int64_t off = b * n + i0;
    if (p.grad_v == nullptr) {
      scale_run(coefs[b].a, p.grad + off, p.grad_u + off, i1 - i0);
    } else {
      linear_backward_run(coefs[b], p.grad + off, p.grad_u + off, p.grad_v + off, i1 - i0);
    }
  });
  return -1;
}

DDPM_INSTANTIATE_CPU(cpu_kernel, LinearParams)
DDPM_INSTANTIATE_CPU(cpu_kernel, LinearBackwardParams)

}  // namespace ddpm
