// Per-element math of every operator, forward and backward, in the compute
// type acc. Shared verbatim by the CPU loops (csrc/cpu) and the CUDA kernels
// (csrc/cuda); the coefficients come from coefficients.h.
#pragma once

#include "coefficients.h"

namespace ddpm {

// q_sample:        x_t = sqrt(abar_t)*x_0 + sqrt(1-abar_t)*noise
// posterior mean:  mu = coef1_t*x_0 + coef2_t*x_t
template <typename acc>
DDPM_HD acc linear_elem(const LinearCoef<acc>& k, acc u, acc v) {
  return k.a * u + k.b * v;
}

// exp for the learned variances. On the CPU, float uses a branch-free
// Cody-Waite reduction and a degree-7 polynomial (under 2 ulp on the range
// that matters, |x| < 80; beyond it it saturates to 0 or inf like expf) so
// that the loop vectorizes; libm's expf is a call that stops vectorization.
// Double data and the GPU use the library exp.
DDPM_HD double exp_vectorizable(double x) { return ::exp(x); }
DDPM_HD float exp_vectorizable(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  const float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2); adding and removing 1.5*2^23 rounds to nearest
  // without a libm call (|x / ln 2| < 128 here)
  const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // r = x - n*ln2 in two parts, exact enough for float
  float r = clamped - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  // exp(r) on |r| <= ln2/2
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // scale by 2^n through the exponent bits
  const int32_t e = static_cast<int32_t>(n) + 127;
  const float scale = bits_to_float(static_cast<uint32_t>(e) << 23);
  const float y = p * scale;
  return x < -87.0f ? 0.0f : (x > 88.0f ? std::numeric_limits<float>::infinity() : y);
#endif
}

// exp(log_variance / 2) of a learned variance where t > 0, else exactly 0:
// selected, not multiplied by nz, because at t = 0 the log-variance may be
// NaN (a one-step schedule's clipped table is -inf, and learned_range forms
// -inf + inf*v) or overflow, and 0*NaN would carry the NaN into the sample.
template <typename acc>
DDPM_HD acc learned_sigma(const StepCoef<acc>& k, acc log_variance) {
  return k.nz != acc(0) ? exp_vectorizable(acc(0.5) * log_variance) : acc(0);
}

template <typename acc>
struct StepOut {
  acc sample, pred_xstart, mean, log_variance;
};

// One reverse step for one element. out is the model output (the mean half),
// var_out the variance half (read only when kLearnedVar). The clamp's bounds
// are the sample's (infinite without clipping: one code path for both, and
// NaN still propagates). kHistory: how many of h1, h2 (earlier steps'
// pred_x0, a multistep step's) the mean adds.
template <bool kMeanIsOutput, bool kLearnedVar, int kHistory = 0, typename acc>
DDPM_HD StepOut<acc> step_elem(const StepCoef<acc>& k, acc out, acc var_out,
                               acc x_t, acc noise, acc h1 = acc(0), acc h2 = acc(0)) {
  StepOut<acc> r;
  r.pred_xstart = clamp_propagate_nan(k.A * x_t + k.Bm * out, k.clip_lo, k.clip_hi);
  r.mean = kMeanIsOutput ? out : k.c1 * r.pred_xstart + k.c2 * x_t;
  // selected, not added as 0*out: an infinite output clipped to pred_x0's
  // bound must not turn the mean into NaN, nor -0 into +0
  r.mean = k.c3 != acc(0) ? r.mean + k.c3 * out : r.mean;
  if (kHistory >= 1) r.mean = r.mean + k.e1 * h1;
  if (kHistory >= 2) r.mean = r.mean + k.e2 * h2;
  acc sigma = k.sigma_fixed;
  r.log_variance = k.log_var_fixed;
  if (kLearnedVar) {
    r.log_variance = k.lv_a + k.lv_b * var_out;
    sigma = learned_sigma(k, r.log_variance);
  }
  r.sample = r.mean + sigma * noise;
  return r;
}

template <typename acc>
struct StepGrad {
  acc out, var_out, x_t;
};

// Backward of step_elem for (sample, pred_xstart), with respect to the
// model output (both halves) and x_t. clamp passes the gradient where
// lo <= pred_x0 <= hi, as torch.clamp's backward does (a clip bound is a
// constant: no gradient flows to it); without clipping (lo = -inf) there is
// no clamp, and a NaN pred_x0 passes it too.
template <bool kMeanIsOutput, bool kLearnedVar, typename acc>
DDPM_HD StepGrad<acc> step_backward_elem(
    const StepCoef<acc>& k, acc grad_sample, acc grad_pred_xstart, acc out,
    acc var_out, acc x_t, acc noise) {
  const acc x0 = k.A * x_t + k.Bm * out;
  // & rather than &&: no branch, so the loop stays vectorizable
  const bool inside = ((x0 >= k.clip_lo) & (x0 <= k.clip_hi)) |
                      ((k.clip_lo == -std::numeric_limits<acc>::infinity()) & (x0 != x0));
  acc grad_x0 = grad_pred_xstart + (kMeanIsOutput ? acc(0) : k.c1 * grad_sample);
  grad_x0 = inside ? grad_x0 : acc(0);
  StepGrad<acc> g;
  const acc own = k.c3 != acc(0) ? k.c3 * grad_sample : acc(0);  // as the forward's c3
  g.out = k.Bm * grad_x0 + (kMeanIsOutput ? grad_sample : own);
  g.x_t = k.A * grad_x0 + (kMeanIsOutput ? acc(0) : k.c2 * grad_sample);
  g.var_out = acc(0);
  if (kLearnedVar) {
    // d sample / d v = noise * sigma * 0.5 * lv_b; 0 at t = 0 (no noise
    // there), where lv_b may be inf
    const acc sigma = learned_sigma(k, k.lv_a + k.lv_b * var_out);
    g.var_out = k.nz != acc(0) ? grad_sample * noise * sigma * acc(0.5) * k.lv_b
                               : acc(0);
  }
  return g;
}

// diffusion_mse: the model output's difference from its training target,
// out - target. x_start or noise is read only where the target uses it (the
// callers pass 0 for the other).
//   epsilon: target = noise;  start_x: target = x_0;
//   v:       target = sqrt(abar)*noise - sqrt(1-abar)*x_0
template <LossTarget kTarget>
DDPM_HD constexpr bool loss_reads_x_start() {
  return kTarget != LossTarget::kEpsilon;
}
template <LossTarget kTarget>
DDPM_HD constexpr bool loss_reads_noise() {
  return kTarget != LossTarget::kStartX;
}
template <LossTarget kTarget, typename acc>
DDPM_HD acc loss_diff(const LossCoef<acc>& k, acc out, acc x_start, acc noise) {
  if (kTarget == LossTarget::kEpsilon) return out - noise;
  if (kTarget == LossTarget::kStartX) return out - x_start;
  return out - (k.a * noise - k.b * x_start);
}

}  // namespace ddpm
