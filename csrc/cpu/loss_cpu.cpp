// diffusion_mse on the CPU (see LossParams in ddpm/kernels.h).
//   model_output: sample b at b*model_output_batch_stride; x_start, noise,
//   grad_model_output: [batch, sample_numel]; loss, grad: [batch]
//   loss[b] = w[t_b] * mean_i (out - target)^2
//   backward: grad_model_output = 2*grad[b]*w[t_b]/N * (out - target)
// The tiles of every sample are summed in parallel, each into its own
// partial (eight double accumulators, in a fixed order), then each sample's
// partials in order: no result depends on the thread count.

#include <algorithm>
#include <vector>

#include "ddpm/elementwise.h"
#include "loops.h"

namespace ddpm {
namespace {

// x_start or noise where the target reads it, else 0 (not loaded).
template <bool kReads, typename S, typename acc>
DDPM_HD acc load_if(const S* p) {
  return kReads ? static_cast<acc>(load(p)) : acc(0);
}

// (noise_offset: this channel's, 0 where there is none: added alike on CUDA)
template <LossTarget kTarget, typename S, typename acc>
DDPM_HD acc diff_at(const LossCoef<acc>& k, acc noise_offset, const S* out, const S* x_start,
                    const S* noise, int64_t i) {
  return loss_diff<kTarget>(
      k, static_cast<acc>(load(out + i)),
      load_if<loss_reads_x_start<kTarget>(), S, acc>(x_start + i),
      load_if<loss_reads_noise<kTarget>(), S, acc>(noise + i) + noise_offset);
}

template <LossTarget kTarget, typename S, typename acc>
DDPM_CPU_CLONES double tile_sum(LossCoef<acc> k, acc noise_offset, const S* __restrict out,
                                const S* __restrict x_start, const S* __restrict noise,
                                int64_t n) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double d = diff_at<kTarget>(k, noise_offset, out, x_start, noise, i + j);
      lanes[j] += d * d;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double d = diff_at<kTarget>(k, noise_offset, out, x_start, noise, i);
    lanes[j] += d * d;
  }
  double sum = 0.0;
  for (int j = 0; j < kLanes; ++j) sum += lanes[j];
  return sum;
}

template <LossTarget kTarget, typename S, typename acc>
DDPM_CPU_CLONES void backward_run(LossCoef<acc> k, acc noise_offset, const S* __restrict out,
                                  const S* __restrict x_start, const S* __restrict noise,
                                  S* __restrict grad_out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    store(grad_out + i, k.scale * diff_at<kTarget>(k, noise_offset, out, x_start, noise, i));
  }
}

}  // namespace

template <typename S, typename T>
int64_t cpu_kernel(const LossParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<LossCoef<acc>> coefs;
  const auto coef = [&](int64_t, int64_t t) { return loss_coef<acc>(p.tables, t, 0.0); };
  if (const int64_t bad = cpu::gather_coefficients(p.timesteps, p.batch, coefs, coef); bad >= 0) {
    return bad;
  }
  const int64_t n = p.sample_numel;
  const int64_t tiles = loss_tiles_per_sample(n);
  dispatch_loss_target(p.target, [&](auto target) {
    constexpr LossTarget kTarget = decltype(target)::value;
    cpu::parallel_for(0, p.batch * tiles, std::max<int64_t>(cpu::kGrainSize / kLossTile, 1),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t tile = begin; tile < end; ++tile) {
                         const int64_t b = tile / tiles;
                         const int64_t i0 = (tile - b * tiles) * kLossTile;
                         const int64_t i1 = std::min(i0 + kLossTile, n);
                         double sum = 0.0;
                         cpu::for_each_offset_run(
                             p.noise_offset, b, i0, i1,
                             [&](acc noise_offset, int64_t s0, int64_t s1) {
                               const int64_t off = b * n + s0;
                               sum += tile_sum<kTarget>(
                                   coefs[b], noise_offset,
                                   p.model_output + b * p.model_output_batch_stride + s0,
                                   p.x_start + off, p.noise + off, s1 - s0);
                             });
                         p.partials[tile] = sum;
                       }
                     });
  });
  for (int64_t b = 0; b < p.batch; ++b) {
    p.loss[b] = static_cast<acc>(loss_from_partials(p, b, p.timesteps.t[b]));
  }
  return -1;
}

template <typename S, typename T>
int64_t cpu_kernel(const LossBackwardParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<LossCoef<acc>> coefs;
  const auto coef = [&](int64_t b, int64_t t) { return loss_backward_coef<acc>(p, b, t); };
  if (const int64_t bad = cpu::gather_coefficients(p.timesteps, p.batch, coefs, coef); bad >= 0) {
    return bad;
  }
  const int64_t n = p.sample_numel;
  dispatch_loss_target(p.target, [&](auto target) {
    constexpr LossTarget kTarget = decltype(target)::value;
    cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0, int64_t i1) {
      cpu::for_each_offset_run(
          p.noise_offset, b, i0, i1, [&](acc noise_offset, int64_t s0, int64_t s1) {
            const int64_t off = b * n + s0;
            backward_run<kTarget>(coefs[b], noise_offset,
                                  p.model_output + b * p.model_output_batch_stride + s0,
                                  p.x_start + off, p.noise + off, p.grad_model_output + off,
                                  s1 - s0);
          });
    });
  });
  return -1;
}

DDPM_INSTANTIATE_CPU(cpu_kernel, LossParams)
DDPM_INSTANTIATE_CPU(cpu_kernel, LossBackwardParams)

}  // namespace ddpm
